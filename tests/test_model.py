import torch
import torch.nn.functional as F

from tests.task_fixtures import vector_net


def net(head_dims=(2, 5, 3), frozen=False):
    torch.manual_seed(0)
    backbone = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 8), torch.nn.Dropout(0.5))
    return vector_net(backbone, 8, (6,), 0.0, list(head_dims), frozen_backbone=frozen)


def test_each_sample_is_routed_to_its_own_head():
    m = net().eval()
    x, tasks = torch.randn(7, 1, 4, 4), torch.tensor([0, 1, 2, 1, 0, 2, 2])
    out = m(x, tasks)
    feats = m.features(x)
    assert out.shape == (7, 5)
    for i, t in enumerate(tasks.tolist()):
        w = m.head_dims[t]
        assert torch.allclose(out[i, :w], m.head(t, feats[i : i + 1])[0])
        assert torch.isinf(out[i, w:]).all() and (out[i, w:] < 0).all()


def test_loss_and_argmax_on_routed_output_equal_those_of_the_own_head():
    m = net().eval()
    x, tasks = torch.randn(6, 1, 4, 4), torch.tensor([0, 0, 1, 1, 2, 2])
    y = torch.tensor([1, 0, 4, 2, 0, 2])
    out = m(x, tasks)
    feats = m.features(x)
    per_sample = torch.stack([F.cross_entropy(m.head(t, feats[i : i + 1]), y[i : i + 1])
                              for i, t in enumerate(tasks.tolist())])
    assert torch.allclose(F.cross_entropy(out, y), per_sample.mean())
    own_argmax = [int(m.head(t, feats[i : i + 1]).argmax()) for i, t in enumerate(tasks.tolist())]
    assert out.argmax(1).tolist() == own_argmax
    assert torch.isfinite(torch.autograd.grad(F.cross_entropy(m(x, tasks), y), m.heads[1].weight)[0]).all()


def test_int_task_label_and_single_task_path_agree():
    m = net().eval()
    x = torch.randn(3, 1, 4, 4)
    assert torch.allclose(m(x, 1)[:, :5], m.forward_single_task(x, 1))


def test_frozen_backbone_gets_no_gradient_and_stays_in_eval():
    m = net(frozen=True).train()
    assert not m.backbone.training and m.shared.training
    loss = m(torch.randn(4, 1, 4, 4), torch.tensor([0, 1, 2, 0])).clamp(min=-1e4).sum()
    loss.backward()
    assert all(p.grad is None for p in m.backbone.parameters())
    assert m.heads[0].weight.grad is not None
