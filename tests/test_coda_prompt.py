"""CODA-Prompt (strategies/coda_prompt.py) on hand-made tensors: the query is the frozen class token, the weights α
follow the keys and attention vectors, a new task's rows are orthogonal to the earlier ones, and only the current
task's rows (with the classifier) learn while the earlier rows and the backbone stay bit-identical."""

from __future__ import annotations

import math
import types

import pytest
import torch

from benchmark.errors import UserError
from benchmark.models.prompting import forward_with_prefixes
from benchmark.models.vit_tiny import VitTinyConfig, create_vit_tiny
from strategies.coda_prompt import (
    CodaPromptConfig,
    CodaPrompts,
    StreamLength,
    component_weights,
    ortho_penalty,
    orthogonal_rows,
    prompt_layers,
)
from strategies.common.prompting import PromptedNet, prompt_optimizer
from tests.task_fixtures import vector_net


@pytest.fixture
def vit():
    torch.manual_seed(0)
    return create_vit_tiny(VitTinyConfig(embed_dim=16, depth=4, num_heads=2), image_size=28, in_chans=1)


def prompts(vit, n_tasks: int, seed: int = 0, **cfg) -> CodaPrompts:
    coda = CodaPrompts(CodaPromptConfig(**cfg), vit, torch.Generator().manual_seed(seed))
    coda.n_tasks = n_tasks
    return coda


def test_alpha_is_the_cosine_of_the_attended_query_and_the_key():
    q = torch.tensor([[1.0, 2.0], [3.0, -1.0]])
    attention = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 2.0]])
    keys = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    # by hand, cos(q ⊙ A_m, K_m). sample 0: (1, 0)∠(1, 0) = 1; (1, 2)∠(0, 1) = 2/√5; (0, 4)∠(1, 1) = 1/√2.
    # sample 1: (3, 0)∠(1, 0) = 1; (3, −1)∠(0, 1) = −1/√10; (0, −2)∠(1, 1) = −1/√2
    expected = torch.tensor([[1.0, 2 / math.sqrt(5), 1 / math.sqrt(2)],
                             [1.0, -1 / math.sqrt(10), -1 / math.sqrt(2)]])
    assert torch.allclose(component_weights(q, keys, attention), expected, atol=1e-6)
    other = attention.clone()
    other[0] = torch.tensor([0.0, 1.0])  # component 0 now attends to the coordinate its key ignores
    assert component_weights(q, keys, other)[0, 0].abs() < 1e-6


def test_the_prompt_is_the_alpha_weighted_sum_of_the_started_rows_halved_into_keys_and_values(vit):
    coda = prompts(vit, n_tasks=2, pool_size=4, length=4)
    q = torch.randn(3, 16)
    assert coda.prefixes(q) == {}  # before the first task: no component, the backbone's own forward
    coda.start_task(0)
    layer = coda.components["0"]
    P, K, A = (torch.stack(list(rows))[:2].detach() for rows in (layer.P, layer.K, layer.A))  # task 0: rows 0, 1
    prompt = torch.einsum("bm,mld->bld", component_weights(q, K, A), P)
    prefix = coda.prefixes(q)[0]
    assert prefix.shape == (3, 2, 2, 16)
    assert torch.allclose(prefix[:, 0], prompt[:, :2], atol=1e-6) and torch.allclose(prefix[:, 1], prompt[:, 2:])
    assert sorted(coda.prefixes(q)) == [0, 1] == prompt_layers(4)  # the authors' blocks 0–4 of 12 → 0, 1 of 4
    assert prompt_layers(12) == [0, 1, 2, 3, 4] and prompt_layers(1) == [0]


def test_the_query_is_the_frozen_class_token_and_alpha_follows_it(vit):
    coda = prompts(vit, n_tasks=1, pool_size=4, length=2)
    coda.start_task(0)
    net = PromptedNet(vector_net(vit, 16, (), 0.0, [3]), coda, "--strategy coda_prompt").train()
    seen = []
    net.prompter.prefixes = lambda q, own=coda.prefixes: seen.append(q) or own(q)
    x = torch.randn(5, 1, 28, 28)
    feats = net.features(x)
    with torch.no_grad():
        cls = vit.forward_features(x)[:, 0]
    assert torch.equal(seen[0], cls) and not seen[0].requires_grad
    expected = forward_with_prefixes(vit, x, CodaPrompts.prefixes(coda, cls))[:, 0]
    assert torch.allclose(feats, net.shared(expected), atol=1e-6)


def test_a_new_tasks_rows_are_orthonormal_and_orthogonal_to_the_trained_earlier_ones(vit):
    coda = prompts(vit, n_tasks=3, pool_size=12, length=2)
    coda.start_task(0)
    layer = coda.components["1"]
    with torch.no_grad():  # task 0 "trained": its rows no longer orthonormal
        for rows in (layer.P, layer.K, layer.A):
            for p in list(rows)[:4]:
                p.add_(0.5 * torch.randn_like(p))
    coda.start_task(1)
    for rows in (layer.P, layer.K, layer.A):
        flat = torch.stack([p.detach().flatten() for p in rows])
        old, new = flat[:4], flat[4:8]
        assert (new @ old.T).abs().max() < 1e-5
        assert torch.allclose(new @ new.T, torch.eye(4), atol=1e-5)
        assert flat[8:].abs().sum() == 0  # task 2's rows: zeros until its task starts
        assert [p.requires_grad for p in rows] == [False] * 4 + [True] * 8


def test_refusals_more_keys_than_dimensions_and_fewer_components_than_tasks(vit):
    with pytest.raises(UserError, match="cannot be orthogonal in 3 dimensions"):
        orthogonal_rows(torch.eye(3)[:2], 2, torch.Generator().manual_seed(0))
    assert torch.allclose(orthogonal_rows(torch.eye(3)[:2], 1, torch.Generator()).abs(), torch.tensor([[0., 0., 1.]]))
    with pytest.raises(UserError, match="pass at most 16"):
        prompts(vit, n_tasks=2, pool_size=17)
    with pytest.raises(UserError, match="pass at least 5"):
        prompts(vit, n_tasks=5, pool_size=4).start_task(0)
    with pytest.raises(UserError, match="experience 2 is not one of them"):
        prompts(vit, n_tasks=2).start_task(2)
    assert prompts(vit, n_tasks=2).pool == 16  # 0: min(100, D)


def test_the_ortho_penalty_is_zero_on_orthonormal_rows_and_grows_with_overlap(vit):
    assert ortho_penalty(torch.eye(3)) == 0
    assert ortho_penalty(torch.tensor([[1.0, 0.0], [1.0, 0.0]])) == pytest.approx(0.5)  # T Tᵀ − I = [[0, 1], [1, 0]]
    coda = prompts(vit, n_tasks=2, pool_size=4, length=2, ortho_mu=0.1)
    coda.start_task(0)
    assert float(coda.ortho_loss()) == pytest.approx(0.0, abs=1e-10)  # Gram–Schmidt rows: orthonormal
    with torch.no_grad():
        coda.components["0"].K[1].copy_(coda.components["0"].K[0])
    assert float(coda.ortho_loss()) == pytest.approx(0.1 * 0.5, abs=1e-6)  # one 2×2 K Kᵀ − I with two ones
    x, q = torch.randn(2, 1, 28, 28), torch.randn(2, 16)
    assert coda.prompted(vit, x, q, task=None)[1] is None  # evaluation: no penalty
    assert prompts(vit, n_tasks=2, pool_size=4).prompted(vit, x, q, task=0)[1] is None  # μ = 0: none


def test_only_the_current_tasks_rows_and_the_classifier_learn_the_rest_stays_bit_identical(vit):
    coda = prompts(vit, n_tasks=2, pool_size=8, length=4)
    net = PromptedNet(vector_net(vit, 16, (), 0.0, [3]), coda, "--strategy coda_prompt")
    head = net.heads[0]
    opt = prompt_optimizer(torch.optim.Adam(head.parameters(), lr=1e-2), net)
    x, y = torch.randn(6, 1, 28, 28), torch.tensor([0, 1, 2, 0, 1, 2])
    for task in (0, 1):  # one optimizer throughout: Adam's moments from task 0 carry over, as in a run
        coda.start_task(task)
        net.train_task = task
        net.train()
        before = {n: p.detach().clone() for n, p in net.named_parameters()}
        for _ in range(3):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(x, 0), y).backward()
            opt.step()
        for name, p in net.prompter.named_parameters():
            owner = int(name.split(".")[-1]) // 4  # row m belongs to task m // (8 / 2)
            if owner == task:
                assert p.grad is not None and p.grad.abs().sum() > 0 and not torch.equal(p, before[f"prompter.{name}"])
            else:  # earlier rows: frozen; later ones: not in the forward
                assert p.grad is None and torch.equal(p, before[f"prompter.{name}"]), name
        assert all(p.grad is None and torch.equal(p, before[f"backbone.{n}"]) for n, p in vit.named_parameters())
        assert head.weight.grad.abs().sum() > 0 and not torch.equal(head.weight, before["heads.0.weight"])


def test_the_stream_length_is_read_before_the_first_experience_and_saved_with_the_prompts(vit):
    coda = prompts(vit, n_tasks=0)
    assert coda.n_tasks is None and coda.task is None
    experience = types.SimpleNamespace(origin_stream=[0, 1, 2])
    StreamLength().before_training_exp(types.SimpleNamespace(model=types.SimpleNamespace(prompter=coda),
                                                             experience=experience))
    assert coda.n_tasks == 3 and coda.per_task() == 16 // 3
    coda.start_task(0)
    coda.start_task(1)
    loaded = prompts(vit, n_tasks=0, seed=1)
    loaded.load_state_dict(coda.state_dict())  # a saved model (--save-model) prompts as the trained one
    q = torch.randn(2, 16)
    assert loaded.task == 1 and loaded.n_tasks == 3
    a, b = loaded.prefixes(q), coda.prefixes(q)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
