"""L2P (strategies/l2p.py) on hand-made tensors: the keys decide which prompts an image gets; the surrogate loss on a
hand-computed case; the features are the selected prompts' token outputs; only prompts, keys and the classifier
train, and the query stays the frozen backbone's."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from benchmark.models.vit_tiny import VitTinyConfig, create_vit_tiny
from strategies.common.prompting import PromptedNet, prompt_optimizer
from strategies.l2p import L2PConfig, PromptPool, batch_vote, key_similarity, pull_loss
from tests.task_fixtures import vector_net

DIM = 16


def l2p_net(**cfg) -> PromptedNet:
    torch.manual_seed(0)
    vit = create_vit_tiny(VitTinyConfig(embed_dim=DIM, depth=2, num_heads=2), image_size=28, in_chans=1)
    pool = PromptPool(L2PConfig(**cfg), vit, torch.Generator().manual_seed(1))
    return PromptedNet(vector_net(vit, DIM, (8,), 0.0, [4]), pool, "--strategy l2p")


def test_the_keys_nearest_the_query_in_cosine_are_selected_in_order():
    net = l2p_net(pool_size=8, top_k=3, batchwise=False)
    with torch.no_grad():
        net.prompter.keys.copy_(torch.eye(8, DIM) * torch.arange(1, 9)[:, None])  # key m along axis m; norms differ
    query = torch.zeros(2, DIM)
    query[0, [2, 7, 4]] = torch.tensor([3.0, 2.0, 1.0])  # cos order 2, 7, 4; the key norms play no part
    query[1, [0, 5, 6, 1]] = torch.tensor([0.5, 4.0, 0.1, 2.0])
    idx, _ = net.prompter.select(query, training=True)
    assert idx.tolist() == [[2, 7, 4], [5, 1, 0]]


def test_batchwise_selection_gives_the_batch_its_most_frequent_prompts_in_training_only():
    assert batch_vote(torch.tensor([[0, 1], [1, 2], [1, 0], [3, 2]]), 2).tolist() == [[1, 0]] * 4  # 1: 3×; 0, 2: 2×
    net = l2p_net(pool_size=4, top_k=1)
    with torch.no_grad():
        net.prompter.keys.copy_(torch.eye(4, DIM))
    query = torch.eye(4, DIM)[[3, 3, 1]]
    assert net.prompter.select(query, training=True)[0].tolist() == [[3], [3], [3]]
    assert net.prompter.select(query, training=False)[0].tolist() == [[3], [3], [1]]  # evaluation: each its own


def test_the_surrogate_on_a_hand_computed_case():
    query = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    keys = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0], [-3.0, 0.0]])
    sim = key_similarity(query, keys)
    assert torch.allclose(sim, torch.tensor([[1, 1 / math.sqrt(2), 0, -1], [0, 1 / math.sqrt(2), 1, 0]]))
    idx = sim.topk(2, dim=1).indices  # [[0, 1], [2, 1]]
    # ((1 − 1) + (1 − 1/√2) + (1 − 1) + (1 − 1/√2)) / 2 = 1 − 1/√2
    assert pull_loss(sim, idx).item() == pytest.approx(1 - 1 / math.sqrt(2))
    net = l2p_net(pool_size=4, top_k=2, pull_coeff=0.1, batchwise=False)
    with torch.no_grad():
        net.prompter.keys.zero_()
        net.prompter.keys[:, :2] = keys
    _, surrogate = net.prompter(net.backbone, torch.randn(2, 1, 28, 28), nn.functional.pad(query, (0, DIM - 2)), 0)
    assert surrogate.item() == pytest.approx(0.1 * (1 - 1 / math.sqrt(2)), rel=1e-5)


def test_the_features_are_the_selected_prompts_outputs_and_no_other_prompt_matters():
    net = l2p_net(pool_size=6, top_k=2, batchwise=False).eval()
    with torch.no_grad():
        net.prompter.keys.copy_(torch.eye(6, DIM))
    x = torch.randn(3, 1, 28, 28)
    query = torch.eye(6, DIM)[[0, 0, 0]] + torch.eye(6, DIM)[[1, 1, 1]] * 0.5  # selects 0 then 1
    before, _ = net.prompter(net.backbone, x, query, None)
    with torch.no_grad():
        net.prompter.prompts[[2, 3, 4, 5]] += torch.randn(4, 5, DIM)  # not selected
    assert torch.equal(net.prompter(net.backbone, x, query, None)[0], before)
    with torch.no_grad():
        net.prompter.prompts[1] += torch.randn(5, DIM)  # (a constant shift the layer norms would undo)
    assert (net.prompter(net.backbone, x, query, None)[0] - before).abs().max() > 1e-3


def test_a_training_step_moves_prompts_keys_and_classifier_never_the_backbone_nor_the_query():
    net = l2p_net(pool_size=5, top_k=2)
    x, y = torch.randn(8, 1, 28, 28), torch.randint(0, 4, (8,))
    query = net.query(x)
    frozen = {k: v.clone() for k, v in net.backbone.state_dict().items()}
    opt = prompt_optimizer(torch.optim.Adam(net.heads.parameters(), lr=0.05), net)
    net.train()
    loss = nn.functional.cross_entropy(net(x, 0), y) + net.surrogate
    loss.backward()
    selected = net.prompter.last_idx[0].tolist()
    assert all(p.grad is None for p in net.backbone.parameters())
    grads = net.prompter.prompts.grad.flatten(1).abs().sum(1)
    assert (grads[selected] > 0).all() and (grads[[m for m in range(5) if m not in selected]] == 0).all()
    key_grads = net.prompter.keys.grad.abs().sum(1)
    assert (key_grads[selected] > 0).all() and key_grads.sum() == key_grads[selected].sum()
    assert net.heads[0].weight.grad.abs().sum() > 0 and net.shared[0].weight.grad.abs().sum() > 0
    opt.step()
    assert all(torch.equal(frozen[k], v) for k, v in net.backbone.state_dict().items())
    assert torch.equal(net.query(x), query) and not net.query(x).requires_grad
