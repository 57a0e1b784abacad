"""The six soft-sharing / routing / attention architectures, each by its defining mechanism on known tensors:
sluice's α/β mixing, low-rank's rank bound, Tucker factors reproducing the task weights, group lasso's penalty and
its zeroing of an unused feature, routing's per-task path, task attention's masks."""

from __future__ import annotations

import pytest
import torch

from benchmark.errors import UserError
from benchmark.mtl import MultiTaskModel
from benchmark.mtl.architectures.group_lasso import l21
from benchmark.mtl.architectures.tensor_factorisation import TuckerLayer, hosvd, tucker_weights, unfold

TASKS = ["a", "b", "c"]


def _model(architecture: str, **kwargs) -> MultiTaskModel:
    torch.manual_seed(0)
    return MultiTaskModel(TASKS, architecture=architecture, in_features=5, shared_layers=[4, 4], **kwargs)


def _columns(arch, x):
    """Each column run alone, without any mixing."""
    out = []
    for column in arch.columns:
        h = x
        for block in column:
            h = block(h)
        out.append(h)
    return out


def test_sluice_with_identity_alpha_and_last_layer_beta_is_independent_columns():
    arch = _model("sluice").arch
    assert not torch.allclose(arch.alphas[0], torch.eye(6))  # 3 tasks × 2 subspaces, mixing a little at the start
    with torch.no_grad():
        for a in arch.alphas:
            a.copy_(torch.eye(6))
    x = torch.randn(7, 5)
    reps = arch(x)
    for t, h in zip(TASKS, _columns(arch, x), strict=True):
        assert torch.allclose(reps[t], h, atol=1e-6)


def test_sluice_alpha_mixes_subspaces_across_tasks_and_beta_skips_layers():
    arch = _model("sluice").arch
    swap = torch.eye(6)[[2, 1, 0, 3, 4, 5]]  # a's first subspace ← b's first subspace and back
    with torch.no_grad():
        arch.alphas[0].copy_(swap)
        arch.alphas[1].copy_(torch.eye(6))
        arch.betas.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]]))
    x = torch.randn(7, 5)
    first = [column[0](x) for column in arch.columns]  # layer 1 of each column, B×4: subspaces [:, :2], [:, 2:]
    mixed = [torch.cat([first[1][:, :2], first[0][:, 2:]], 1), torch.cat([first[0][:, :2], first[1][:, 2:]], 1),
             first[2]]
    reps = arch(x)
    assert torch.allclose(reps["a"], arch.projections[0](mixed[0]), atol=1e-6)  # β_a = layer 1 only
    assert torch.allclose(reps["b"], arch.columns[1][1](mixed[1]), atol=1e-6)  # β_b = layer 2 only
    both = 0.5 * arch.projections[0](mixed[2]) + 0.5 * arch.columns[2][1](mixed[2])
    assert torch.allclose(reps["c"], both, atol=1e-6)


def test_sluice_widths_must_split_into_the_subspaces():
    with pytest.raises(UserError, match="not divisible by 3"):
        MultiTaskModel(TASKS, architecture="sluice", in_features=5, shared_layers=[4], architecture_args={
            "subspaces": 3})


def test_low_rank_task_weights_differ_from_the_shared_ones_by_at_most_rank_r():
    arch = _model("low-rank", architecture_args={"rank": 1}).arch
    with torch.no_grad():
        for u in arch.U:
            u.normal_()
    x = torch.randn(6, 5)
    reps = arch(x)
    for k, t in enumerate(TASKS):
        h = x
        for j, block in enumerate(arch.trunk):
            delta = arch.task_weight(k, j) - block[0].weight
            assert torch.linalg.matrix_rank(delta) == 1
            h = block[1:](h @ arch.task_weight(k, j).T + block[0].bias)
        assert torch.allclose(reps[t], h, atol=1e-5)


def test_low_rank_starts_with_every_task_on_the_shared_network():
    arch = _model("low-rank").arch
    reps = arch(torch.randn(4, 5))
    assert torch.allclose(reps["a"], reps["b"]) and torch.allclose(reps["b"], reps["c"])


def test_tucker_factors_reconstruct_the_task_weights():
    torch.manual_seed(0)
    tensor = torch.randn(5, 4, 3)
    core, factors = hosvd(tensor, (5, 4, 3))  # full ranks: exact
    assert torch.allclose(tucker_weights(core, *factors), tensor, atol=1e-5)
    core, factors = hosvd(tensor, (2, 2, 3))
    manual = torch.zeros(5, 4, 3)  # W[a, b, t] = Σ_pqs S[p, q, s] U_in[a, p] U_out[b, q] U_task[t, s]
    for p in range(2):
        for q in range(2):
            for s in range(3):
                manual += core[p, q, s] * torch.einsum("a,b,t->abt", factors[0][:, p], factors[1][:, q],
                                                        factors[2][:, s])
    assert torch.allclose(tucker_weights(core, *factors), manual, atol=1e-5)
    assert torch.linalg.matrix_rank(unfold(manual, 0)) == 2


def test_tucker_layer_applies_each_tasks_reconstructed_weight():
    torch.manual_seed(0)
    layer = TuckerLayer(5, 4, 3, rank=2, task_rank=0)
    h = torch.randn(3, 6, 5)
    out = layer(h)
    W = layer.weights()
    for t in range(3):
        assert torch.allclose(out[t], h[t] @ W[:, :, t] + layer.bias[t], atol=1e-5)
    assert layer.u_task.shape == (3, 3) and layer.core.shape == (2, 2, 3)


def test_group_lasso_penalty_is_the_sum_of_cross_task_column_norms():
    W1, W2 = torch.tensor([[3.0, 0.0], [0.0, 1.0]]), torch.tensor([[4.0, 0.0]])
    assert float(l21([W1, W2])) == pytest.approx(5.0 + 1.0)  # ‖(3, 0, 4)‖ + ‖(0, 1, 0)‖
    model = _model("group-lasso", architecture_args={"strength": 0.5})
    expected = 0.5 * sum(torch.cat([c[0][0].weight for c in model.arch.columns]).norm(dim=0))
    assert torch.allclose(model.arch.penalty(), expected)
    preds = model(torch.randn(4, 5))
    labels = {t: torch.zeros(4, dtype=torch.long) for t in TASKS}
    plain = model.weighting.combine(model.task_losses(preds, labels))
    assert torch.allclose(model.compute_loss(preds, labels), plain + expected)


def test_group_lasso_drives_a_feature_no_task_needs_to_zero():
    torch.manual_seed(0)
    x = torch.randn(256, 5)
    labels = {"a": (x[:, 0] > 0).long(), "b": (x[:, 1] > 0).long(), "c": (x[:, 0] + x[:, 1] > 0).long()}
    model = MultiTaskModel(TASKS, architecture="group-lasso", in_features=5, shared_layers=[4],
                           architecture_args={"strength": 0.05})
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(400):
        opt.zero_grad()
        model.backward(model.task_losses(model(x), labels))
        opt.step()
    norms = model.arch.group_norms()
    assert norms[2:].max() < 0.05 * norms[:2].min(), norms  # features 2–4 are noise for every task


def test_routing_evaluates_each_tasks_argmax_path_and_only_those_blocks():
    arch = _model("routing", architecture_args={"blocks": 3}).arch
    with torch.no_grad():
        arch.logits.zero_()
        for k, path in enumerate([[0, 2], [1, 2], [2, 0]]):
            for j, block in enumerate(path):
                arch.logits[k, j, block] = 5.0
    arch.eval()
    assert [arch.path(t) for t in TASKS] == [[0, 2], [1, 2], [2, 0]]
    x = torch.randn(6, 5)
    reps = arch(x)
    for t in TASKS:
        h = x
        for j, block in enumerate(arch.path(t)):
            h = arch.blocks[j][block](h)
        assert torch.allclose(reps[t], h, atol=1e-6)


def test_routing_training_samples_one_block_per_layer_and_trains_the_router():
    arch = _model("routing").arch
    arch.train()
    s = arch.selections()
    assert s.shape == (3, 2, 3) and torch.equal(s.sum(-1), torch.ones(3, 2)) and set(s.unique().tolist()) <= {0, 1}
    sum(v.sum() for v in arch(torch.randn(4, 5)).values()).backward()
    assert arch.logits.grad is not None and arch.logits.grad.abs().sum() > 0  # straight-through gradient


def test_task_attention_masks_are_distributions_over_positions_and_pool_the_values():
    torch.manual_seed(0)
    model = MultiTaskModel(TASKS, architecture="task-attention", backbone="small_cnn", input_shape=(1, 28, 28),
                           backbone_args={"channels": [4, 8]}, shared_layers=[6])
    arch = model.arch
    x = torch.randn(2, 1, 28, 28)
    tokens = arch.backbone(x)
    a = arch.attention(tokens)
    assert a.shape == (3, 2, tokens.shape[1]) and torch.allclose(a.sum(-1), torch.ones(3, 2))
    assert not torch.allclose(a[0], a[1])  # each task reads its own positions
    reps = arch(x)
    for k, t in enumerate(TASKS):
        assert torch.allclose(reps[t], arch.trunk((a[k][..., None] * tokens).sum(1)), atol=1e-5)
