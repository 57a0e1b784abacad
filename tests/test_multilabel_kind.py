"""Kind `multilabel` (benchmark/tasks/kinds/multilabel.py) on tiny examples worked out by hand: mAP (sklearn's
definition, labels without a positive left out), micro/macro F1 at 0.5, the BCE loss, the distillation term, the
gradient, and that the scores are over the whole split rather than means of per-batch scores."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from benchmark.tasks import TaskSpec, task_kind
from benchmark.tasks.kinds.multilabel import average_precision

KIND = task_kind("multilabel")


def spec(labels: int = 3) -> TaskSpec:
    return TaskSpec("tags", kind="multilabel", params={"num_labels": labels})


# 4 images × 3 labels. Label 0 ranks pos, neg, pos, neg: AP = ½·1 + ½·⅔ = 5/6. Label 1 ranks neg, pos, ...:
# AP = 1·½ = 1/2. Label 2 has no positive: no AP, left out. mAP = (5/6 + 1/2) / 2 = 2/3.
LOGITS = torch.tensor([[3.0, -0.5, -1.0],
                       [2.0, 1.0, -2.0],
                       [-1.0, -3.0, -3.0],
                       [-2.0, 4.0, -4.0]])
TAGS = torch.tensor([[1.0, 0.0, 0.0],
                     [0.0, 1.0, 0.0],
                     [1.0, 0.0, 0.0],
                     [0.0, 0.0, 0.0]])
# At σ > 0.5 (logit > 0) the predictions are [[1,0,0],[1,1,0],[0,0,0],[0,1,0]]:
#   label 0: TP 1, FP 1, FN 1 → F1 = 2/(2+1+1) = 1/2;  label 1: TP 1, FP 1, FN 0 → F1 = 2/3;  label 2: undefined
#   micro: TP 2, FP 2, FN 1 → 4/(4+2+1) = 4/7;  macro over labels 0, 1: (1/2 + 2/3)/2 = 7/12
HAND = {"map": 2 / 3, "f1_micro": 4 / 7, "f1_macro": 7 / 12}


def scores_of(*batches, labels: int = 3) -> dict:
    m = KIND.metric(spec(labels))
    for o, y in batches:
        m.update(o, y)
    return m.compute()


def test_map_and_f1_equal_the_hand_computed_values():
    assert scores_of((LOGITS, TAGS)) == pytest.approx(HAND)


def test_tied_scores_enter_the_precision_recall_curve_together():
    # scores 0.5 (pos), 0.5 (neg), 0.2 (pos): one step at 0.5 (P ½, R ½), one at 0.2 (P ⅔, R 1) → ½·½ + ½·⅔ = 7/12
    assert average_precision(np.array([0.5, 0.5, 0.2]), np.array([1, 0, 1])) == pytest.approx(7 / 12)
    assert math.isnan(average_precision(np.array([0.5, 0.1]), np.array([0, 0])))


def test_the_scores_equal_sklearns():
    metrics = pytest.importorskip("sklearn.metrics")
    gen = torch.Generator().manual_seed(0)
    logits, tags = torch.randn(40, 5, generator=gen).round(decimals=1), torch.randint(0, 2, (40, 5), generator=gen)
    tags[:, 4] = 0  # a label without a positive: sklearn's macro AP would count it, so compare on the others
    ours = scores_of((logits, tags.float()), labels=5)
    assert ours["map"] == pytest.approx(metrics.average_precision_score(tags[:, :4], logits[:, :4], average="macro"))
    predicted = (logits > 0).long()
    assert ours["f1_micro"] == pytest.approx(metrics.f1_score(tags, predicted, average="micro"))
    assert ours["f1_macro"] == pytest.approx(metrics.f1_score(tags, predicted, average="macro", zero_division=np.nan))
    assert metrics.average_precision_score(TAGS[:, :2], LOGITS[:, :2], average="macro") == pytest.approx(HAND["map"])


def test_the_scores_are_over_the_whole_split_not_a_mean_of_batches():
    halves = [(LOGITS[:2], TAGS[:2]), (LOGITS[2:], TAGS[2:])]
    assert scores_of(*halves) == pytest.approx(HAND)
    per_batch = [scores_of(h)["f1_micro"] for h in halves]  # 4/5 and 0: their mean (2/5) is not the split's 4/7
    assert np.mean(per_batch) != pytest.approx(HAND["f1_micro"])


def test_the_loss_is_bce_with_logits_averaged_over_images_and_labels():
    z, y = torch.tensor([[0.0, 2.0]]), torch.tensor([[1.0, 0.0]])
    # −log σ(0) = log 2;  −log(1 − σ(2)) = log(1 + e²)
    by_hand = (math.log(2) + math.log(1 + math.e**2)) / 2
    loss = KIND.loss(z, y, spec(2))
    assert float(loss) == pytest.approx(by_hand)
    assert float(loss) == pytest.approx(float(torch.nn.functional.binary_cross_entropy_with_logits(z, y)))


def test_distillation_is_zero_for_identical_logits_and_the_sum_of_the_labels_bernoulli_kls():
    t = 2.0
    student, teacher = torch.tensor([[1.0, -2.0]]), torch.tensor([[3.0, 0.0]])
    assert float(KIND.distill(teacher, teacher.clone(), spec(2), t)) == pytest.approx(0.0, abs=1e-7)

    def bernoulli_kl(q, p):  # KL(Bern(q) ‖ Bern(p))
        return q * math.log(q / p) + (1 - q) * math.log((1 - q) / (1 - p))

    sig = lambda z: 1 / (1 + math.exp(-z / t))  # noqa: E731
    by_hand = t**2 * sum(bernoulli_kl(sig(zt), sig(zs)) for zs, zt in [(1.0, 3.0), (-2.0, 0.0)])
    term = KIND.distill(student, teacher, spec(2), t)
    assert float(term) == pytest.approx(by_hand) and float(term) > 0


def test_gradients_reach_the_head_through_the_loss_and_the_distillation():
    torch.manual_seed(0)
    s = spec(3)
    head = KIND.make_head(s, 8)
    out = head(torch.randn(4, 8, 2, 2)).flatten(1)
    (KIND.loss(out, TAGS, s) + KIND.distill(out, out.detach() + 1, s, 2.0)).backward()
    assert head.fc.weight.grad is not None and float(head.fc.weight.grad.abs().sum()) > 0


def test_predict_thresholds_each_label_at_one_half_and_targets_pack_and_unpack():
    assert KIND.predict(LOGITS, spec()).tolist() == [[1, 0, 0], [1, 1, 0], [0, 0, 0], [0, 1, 0]]
    row = KIND.pack_target({"tags": [0, 1, 1]}, spec())
    assert KIND.unpack_target(row, spec())["tags"].tolist() == [0, 1, 1]
    with pytest.raises(ValueError, match="2 tags, expected 3"):
        KIND.pack_target({"tags": [0, 1]}, spec())


def test_the_trivial_reference_copies_the_nearest_training_images_tags():
    from benchmark.outputs.references import reference_score

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(6, 4, generator=gen)
    rows = torch.cat([torch.zeros(6, 1), torch.tensor([[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 1], [1, 0, 0],
                                                         [0, 1, 1]]).float()], 1)  # [task id, tags]
    train = [(x[i], rows[i], 0) for i in range(6)]
    shuffled = [train[i] for i in (3, 0, 5, 1, 4, 2)]
    assert reference_score(spec(), train, shuffled) == {"name": "1-NN on raw pixels (its target copied)", "score": 1.0}
    # an evaluation image nearest to another's: its tags are that image's, scored by the kind's own mAP
    swapped = [(x[1], rows[0], 0), (x[0], rows[1], 0), *train[2:]]
    assert reference_score(spec(), train, swapped)["score"] < 1.0


def test_a_multi_task_model_learns_a_multilabel_task_beside_a_multiclass_one():
    """`MultiTaskModel` builds the kind's head on its vector trunk: tags that are the signs of 4 inputs are learnt."""
    from benchmark.mtl.model import MultiTaskModel

    g = torch.Generator().manual_seed(0)
    tasks = [TaskSpec("cls", kind="multiclass", params={"num_classes": 3}),
             TaskSpec("tags", kind="multilabel", params={"num_labels": 4})]
    torch.manual_seed(0)
    model = MultiTaskModel(tasks=tasks, in_features=8, shared_layers=[32])
    x = torch.randn(256, 8, generator=g)
    y = {"cls": x[:, 4:7].argmax(1), "tags": (x[:, :4] > 0).float()}
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    losses = []
    for _ in range(150):
        loss = model.compute_loss(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss))
    kind = task_kind("multilabel")
    metric = kind.metric(tasks[1])
    with torch.no_grad():
        metric.update(model(x)["tags"], y["tags"])
    scores = metric.compute()
    assert losses[-1] < 0.3 * losses[0] and scores["map"] > 0.95 and scores["f1_micro"] > 0.85
