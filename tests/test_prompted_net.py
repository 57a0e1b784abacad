"""The prompt methods' shared network (strategies/common/prompting.py) on a hand-made prompter: the query is the frozen
backbone's class token without prompts; the prompted features replace the backbone's vector for training and
evaluation; only the prompter, the shared layers and the heads train; class-IL's training mask; the refusals."""

from __future__ import annotations

import types

import pytest
import torch
from torch import nn

from benchmark.config import parse_config
from benchmark.errors import UserError
from benchmark.harness.feature_cache import use_feature_cache
from benchmark.models.backbone import forward_with_prompts
from benchmark.models.vit_tiny import VitTinyConfig, create_vit_tiny
from benchmark.registry import STRATEGIES
from strategies.common.prompting import PromptedNet, Prompter, PromptPlugin, prompt_optimizer
from tests.task_fixtures import vector_net


class OnePrompt(Prompter):
    """L = 2 shared prompt tokens; features = the prompted class token; surrogate = 0.5·‖prompt‖² (known)."""

    def __init__(self, dim: int):
        super().__init__()
        self.prompt = nn.Parameter(torch.randn(2, dim))
        self.seen = []  # (query, task) of every call

    def prompted(self, backbone, x, query, task):
        self.seen.append((query, task))
        return forward_with_prompts(backbone, x, self.prompt)[:, 0], 0.5 * self.prompt.pow(2).sum()


@pytest.fixture
def net():
    torch.manual_seed(0)
    vit = create_vit_tiny(VitTinyConfig(embed_dim=16, depth=2, num_heads=2), image_size=28, in_chans=1)
    return PromptedNet(vector_net(vit, 16, (8,), 0.0, [2, 3]), OnePrompt(16), "--strategy test")


def test_the_query_is_the_unprompted_class_token_and_the_features_are_the_prompted_ones(net):
    x = torch.randn(4, 1, 28, 28)
    net.train()
    out = net(x, torch.tensor([0, 1, 1, 0]))
    query, task = net.prompter.seen[-1]
    plain = net.backbone.forward_features(x)[:, 0]
    assert torch.equal(query, plain) and not query.requires_grad and task == 0
    prompted = forward_with_prompts(net.backbone, x, net.prompter.prompt)[:, 0]
    assert (prompted - plain).abs().max() > 1e-3  # the prompts change what the heads read
    assert torch.allclose(out[1:3], net.heads[1](net.shared(prompted[1:3])), atol=1e-6)
    assert torch.isneginf(out[0, 2])  # task 0's 2 logits, padded to 3
    net.eval()
    net(x, 0)
    assert net.prompter.seen[-1][1] is None  # at evaluation the prompter gets no task identity
    assert net.backbone.training is False


def test_only_the_prompter_shared_layers_and_heads_train(net):
    before = {k: v.clone() for k, v in net.backbone.state_dict().items()}
    opt = prompt_optimizer(torch.optim.Adam(list(net.shared.parameters()) + list(net.heads.parameters()), lr=0.1), net)
    net.train()
    x, y = torch.randn(6, 1, 28, 28), torch.tensor([0, 1, 0, 1, 0, 1])
    loss = nn.functional.cross_entropy(net(x, 0)[:, :2], y) + net.surrogate
    loss.backward()
    opt.step()
    assert all(p.grad is None for p in net.backbone.parameters())
    assert all(torch.equal(before[k], v) for k, v in net.backbone.state_dict().items())
    assert net.prompter.prompt.grad.abs().sum() > 0 and net.heads[0].weight.grad.abs().sum() > 0
    trained = {id(p) for g in opt.param_groups for p in g["params"]}
    assert id(net.prompter.prompt) in trained and not trained & {id(p) for p in net.backbone.parameters()}
    assert opt.param_groups[0]["lr"] == 0.1


def fake_strategy(net, targets, scenario, current: int = 1):
    experience = types.SimpleNamespace(current_experience=current,
                                       dataset=types.SimpleNamespace(targets=types.SimpleNamespace(uniques=targets)))
    optimizer = prompt_optimizer(torch.optim.Adam(net.heads.parameters(), lr=0.05), net)
    return types.SimpleNamespace(model=net, experience=experience, scenario=scenario, optimizer=optimizer)


def test_the_plugin_masks_other_classes_in_class_il_and_adds_the_surrogate():
    torch.manual_seed(0)
    vit = create_vit_tiny(VitTinyConfig(embed_dim=16, depth=1, num_heads=2), image_size=28, in_chans=1)
    net = PromptedNet(vector_net(vit, 16, (), 0.0, [5]), OnePrompt(16), "--strategy test")
    strategy, plugin = fake_strategy(net, {2, 3}, "class-il"), PromptPlugin(train_mask=True)
    plugin.before_training_exp(strategy)
    assert net.train_task == 1
    strategy.mb_output = net(torch.randn(3, 1, 28, 28), 0)
    plugin.after_forward(strategy)
    assert torch.isneginf(strategy.mb_output[:, [0, 1, 4]]).all() and torch.isfinite(strategy.mb_output[:, 2:4]).all()
    strategy.loss = torch.tensor(1.0)
    plugin.before_backward(strategy)
    assert torch.isclose(strategy.loss, 1 + 0.5 * net.prompter.prompt.pow(2).sum())
    task_il = fake_strategy(net, {0, 1}, "task-il")
    plugin.before_training_exp(task_il)
    task_il.mb_output = out = net(torch.randn(3, 1, 28, 28), 0)
    plugin.after_forward(task_il)
    assert task_il.mb_output is out  # task-IL: each task its own head, nothing to mask


def test_a_backbone_without_tokens_or_cached_features_or_map_heads_are_refused(net):
    base = vector_net(nn.Identity(), 16, (8,), 0.0, [2])
    with pytest.raises(UserError, match="not on cached features.*--no-feature-cache"):
        PromptedNet(base, OnePrompt(16), "--strategy test")
    flat = nn.Linear(4, 16)
    flat.feature_layout, flat.num_features, flat.num_prefix_tokens = "map", 16, 0
    with pytest.raises(UserError, match="--strategy test needs a backbone with a token sequence"):
        PromptedNet(vector_net(flat, 16, (8,), 0.0, [2]), OnePrompt(16), "--strategy test")
    with pytest.raises(UserError, match="heads read maps"):
        PromptedNet(types.SimpleNamespace(feature_form="map", backbone=net.backbone), OnePrompt(16), "--strategy t")
    with pytest.raises(UserError, match="--no-feature-cache"):
        net.with_backbone(nn.Identity())


@pytest.mark.parametrize("name", [n for n in STRATEGIES.names() if STRATEGIES.get(n).meta.prompts_backbone])
def test_a_prompt_strategy_refuses_a_trained_backbone_and_skips_the_feature_cache(name, net):
    with pytest.raises(UserError, match=f"--strategy {name} learns prompts .* pass --backbone-mode frozen"):
        parse_config(["--strategy", name, "--backbone-mode", "last-k"])
    cfg, _ = parse_config(["--strategy", name, "--backbone-mode", "frozen"])
    assert cfg.feature_cache  # the default, which a prompt strategy cannot use
    said = []
    bench, model, identity = use_feature_cache(cfg, "the images", net, {"weights": "w"}, torch.device("cpu"),
                                               log=said.append)
    assert (bench, model, identity) == ("the images", net, {"weights": "w"})
    assert said and "feature cache: not used" in said[0] and name in said[0]
