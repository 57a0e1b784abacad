"""DualPrompt (strategies/dualprompt.py) on hand-made tensors: the task's E-prompt in training, the best key's at test;
the G- and E-prefixes at the blocks the layer map gives; the surrogate on a hand-computed case; only the G-prompt,
the task's E-prompt and key, and the classifier train, never the backbone nor the query."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from benchmark.errors import UserError
from benchmark.models.vit_tiny import VitTinyConfig, create_vit_tiny
from strategies.common.prompting import PromptedNet, PromptPlugin, prompt_optimizer
from strategies.dualprompt import DualPromptConfig, DualPrompts, backbone_layers
from tests.task_fixtures import vector_net

DIM = 16


def dual_net(depth: int = 2, **cfg) -> PromptedNet:
    torch.manual_seed(0)
    vit = create_vit_tiny(VitTinyConfig(embed_dim=DIM, depth=depth, num_heads=2), image_size=28, in_chans=1)
    prompts = DualPrompts(DualPromptConfig(**cfg), vit, torch.Generator().manual_seed(1))
    return PromptedNet(vector_net(vit, DIM, (8,), 0.0, [4]), prompts, "--strategy dualprompt")


def test_vit_b_layers_map_to_the_same_shares_of_a_smaller_depth():
    assert backbone_layers((0, 1), 12, 12) == [0, 1] and backbone_layers((2, 3, 4), 12, 12) == [2, 3, 4]
    assert backbone_layers((0, 1), 12, 4) == [0] and backbone_layers((2, 3, 4), 12, 4) == [1]
    assert backbone_layers((0, 1), 12, 1) == [0] == backbone_layers((2, 3, 4), 12, 1)
    assert backbone_layers((2, 3, 4), 12, 6) == [1, 2]
    assert backbone_layers((1, 3), 0, 4) == [1, 3]
    with pytest.raises(UserError, match=r"layers \[4\] are outside the backbone's 4 blocks"):
        backbone_layers((2, 4), 0, 4)


def test_training_uses_the_tasks_e_prompt_and_evaluation_the_best_key():
    net = dual_net(pool_size=6)
    with torch.no_grad():
        net.prompter.keys.copy_(torch.eye(6, DIM) * 3)
    query = torch.eye(6, DIM)[[5, 0, 2]] + 0.1
    assert net.prompter.choose(query, task=3)[0].tolist() == [3, 3, 3]  # whatever the keys say
    assert net.prompter.choose(query, task=None)[0].tolist() == [5, 0, 2]


def test_the_prefixes_sit_at_the_mapped_blocks_g_first_where_both_meet():
    net = dual_net(depth=2, g_layers=(0,), e_layers=(1,), layers_of=0, g_length=3, e_length=2, pool_size=4)
    prefixes = net.prompter.prefixes(torch.tensor([2, 0]), batch=2)
    assert sorted(prefixes) == [0, 1]
    assert torch.equal(prefixes[0], net.prompter.g_prompt[0].expand(2, -1, -1, -1))  # B×2×L_g×D
    assert torch.equal(prefixes[1], net.prompter.e_prompt[[2, 0], 0])
    one = dual_net(depth=1, g_length=3, e_length=2, pool_size=4)  # ViT-B's layers on one block: both there
    both = one.prompter.prefixes(torch.tensor([1]), batch=1)
    assert list(both) == [0] and both[0].shape == (1, 2, 5, DIM)
    assert torch.equal(both[0][0, :, :3], one.prompter.g_prompt[0]) and torch.equal(both[0][0, :, 3:],
                                                                                  one.prompter.e_prompt[1, 0])


def test_the_surrogate_on_a_hand_computed_case():
    net = dual_net(pool_size=3, pull_coeff=2.0)
    with torch.no_grad():
        net.prompter.keys.zero_()
        net.prompter.keys[:, :2] = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, -1.0]])
    query = nn.functional.pad(torch.tensor([[2.0, 0.0], [0.0, 1.0]]), (0, DIM - 2))
    x = torch.randn(2, 1, 28, 28)
    _, train = net.prompter(net.backbone, x, query, 1)  # key 1 for both: 2·((1 − 1/√2) + (1 − 1/√2))/2
    assert train.item() == pytest.approx(2 * (1 - 1 / math.sqrt(2)), rel=1e-5)
    _, test = net.prompter(net.backbone, x, query, None)  # keys 0 and 1: 2·((1 − 1) + (1 − 1/√2))/2
    assert test.item() == pytest.approx(1 - 1 / math.sqrt(2), rel=1e-5)


def test_a_training_step_moves_the_g_prompt_the_tasks_e_prompt_and_key_and_the_classifier_only():
    net = dual_net(depth=2, pool_size=4, g_layers=(0,), e_layers=(1,), layers_of=0)
    x, y = torch.randn(6, 1, 28, 28), torch.randint(0, 4, (6,))
    query, frozen = net.query(x), {k: v.clone() for k, v in net.backbone.state_dict().items()}
    opt = prompt_optimizer(torch.optim.Adam(net.heads.parameters(), lr=0.05), net)
    net.train()
    net.train_task = 2
    (nn.functional.cross_entropy(net(x, 0), y) + net.surrogate).backward()
    assert all(p.grad is None for p in net.backbone.parameters())
    e_grads = net.prompter.e_prompt.grad.flatten(1).abs().sum(1)
    assert e_grads[2] > 0 and e_grads.sum() == e_grads[2]
    key_grads = net.prompter.keys.grad.abs().sum(1)
    assert key_grads[2] > 0 and key_grads.sum() == key_grads[2]
    assert net.prompter.g_prompt.grad.abs().sum() > 0 and net.heads[0].weight.grad.abs().sum() > 0
    opt.step()
    assert all(torch.equal(frozen[k], v) for k, v in net.backbone.state_dict().items())
    assert torch.equal(net.query(x), query)
    features = net.prompter(net.backbone, x, query, 2)[0]
    assert (features - query).abs().max() > 1e-3  # the prefixes change the class token the heads read


def test_an_experience_past_the_pool_is_refused():
    net = dual_net(pool_size=2)
    net.prompter.start_task(1)
    with pytest.raises(UserError, match="--dualprompt.pool-size ≥ 3"):
        net.prompter.start_task(2)


def test_a_new_task_starts_from_the_last_e_prompt_with_a_fresh_optimizer_and_leaves_the_past_ones_alone():
    """The authors' shared_prompt_pool (prompt[t] = prompt[t − 1]) and reinit_optimizer: Adam moments carried into
    task 1 would keep moving task 0's E-prompt and key, whose gradient is now zero."""
    from tests.test_prompted_net import fake_strategy

    net = dual_net(depth=2, pool_size=4, g_layers=(0,), e_layers=(1,), layers_of=0)
    x, y, plugin = torch.randn(6, 1, 28, 28), torch.randint(0, 4, (6,)), PromptPlugin(train_mask=False)
    strategy = fake_strategy(net, {0, 1}, "task-il", current=0)
    net.train()

    def step():
        strategy.optimizer.zero_grad()
        (nn.functional.cross_entropy(net(x, 0), y) + net.surrogate).backward()
        strategy.optimizer.step()

    plugin.before_training_exp(strategy)
    for _ in range(3):
        step()
    past = net.prompter.e_prompt[0].detach().clone(), net.prompter.keys[0].detach().clone()
    assert strategy.optimizer.state
    strategy.experience.current_experience = 1
    plugin.before_training_exp(strategy)
    assert not strategy.optimizer.state and torch.equal(net.prompter.e_prompt[1], past[0])
    for _ in range(3):
        step()
    assert torch.equal(net.prompter.e_prompt[0], past[0]) and torch.equal(net.prompter.keys[0], past[1])
    assert not torch.equal(net.prompter.e_prompt[1], past[0])  # task 1's own prompt trained on
    fresh = dual_net(pool_size=4, transfer=False)
    fresh.prompter.start_task(1)
    assert not torch.equal(fresh.prompter.e_prompt[1], fresh.prompter.e_prompt[0])
