"""benchmark/outputs/references.py: raw-pixel nearest-neighbour references, hand-computed."""


import pytest
import torch

from benchmark.outputs.references import nearest, reference_score, vote
from benchmark.tasks import TaskSpec, task_kind


def test_vote_counts_first_and_breaks_ties_by_the_nearer_neighbour():
    labels = torch.tensor([[1, 2, 2, 1, 0], [0, 2, 2, 2, 1], [3, 3, 1, 1, 1]])
    assert vote(labels, 4).tolist() == [1, 2, 1]  # 2–2 tie → the nearest (1); plain majorities otherwise


def test_nearest_is_euclidean_on_flattened_inputs():
    train = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 3.0]])
    assert nearest(train, torch.tensor([[9.0, 1.0], [0.0, 2.0]]), k=2).tolist() == [[1, 0], [2, 0]]


def test_knn_reference_on_a_classification_task():
    x = torch.tensor([[0.0], [0.1], [0.2], [5.0], [5.1], [5.2], [5.3]])
    y = torch.tensor([0, 0, 0, 1, 1, 1, 0])
    train = [(xi, yi, 0) for xi, yi in zip(x, y, strict=True)]
    evaluation = [(torch.tensor([0.05]), torch.tensor(0), 0), (torch.tensor([5.25]), torch.tensor(0), 0)]
    ref = reference_score(TaskSpec("t", kind="binary"), train, evaluation)
    # 5-NN of 0.05: four 0s and one 1 → 0 ✓; of 5.25: 5.3 (0), 5.2, 5.1, 5.0 (1), 0.2 (0) → 1 ✗
    assert ref == {"name": "5-NN on raw pixels", "score": 0.5}


def _dense_spec(kind):
    params = {"num_classes": 3, "image_size": 4} | ({"grid": 2, "max_boxes": 2} if kind == "detection" else {})
    return TaskSpec(f"t_{kind}", kind=kind, params=params)


@pytest.mark.parametrize("kind", ["segmentation", "detection"])
def test_copy_reference_is_perfect_when_the_evaluation_images_are_the_training_images(kind):
    torch.manual_seed(0)
    spec = _dense_spec(kind)
    rows = []
    for i in range(4):
        if kind == "segmentation":
            target = {"mask": torch.randint(0, 3, (4, 4))}
        else:
            target = {"boxes": torch.tensor([[0.0, 0.0, 2.0 + i % 2, 2.0]]), "labels": torch.tensor([i % 3])}
        payload = task_kind(kind).pack_target(target, spec)
        rows.append((torch.randn(3, 4, 4), torch.cat([torch.tensor([0.0]), payload]), 0))
    assert reference_score(spec, rows, rows)["score"] == pytest.approx(1.0)
    shuffled = [(rows[(i + 1) % 4][0], rows[i][1], 0) for i in range(4)]  # each image now holds another's target
    assert reference_score(spec, rows, shuffled)["score"] < 1.0


def test_a_kind_without_a_raw_pixel_reference_is_left_out_not_an_error():
    spec = TaskSpec("r", kind="reconstruction", params={"shape": [2]})
    rows = [(torch.randn(2), torch.randn(2), 0) for _ in range(3)]
    assert reference_score(spec, rows, rows) is None


def test_a_kind_without_a_declared_reference_needs_no_reference_members(monkeypatch):
    """The reference is an optional capability: a kind that declares none implements none of its members and gets
    no reference; one that declares a Vote is voted over the labels its Vote maps the targets to."""
    from benchmark.registry import KINDS
    from benchmark.tasks.kind import LabelKind, TaskKind
    from benchmark.tasks.kinds.binary import BinaryParams
    from benchmark.tasks.reference import Vote
    from tests.test_readme_recipes import isolate

    isolate(monkeypatch, KINDS)
    KINDS.register("plain", config_cls=BinaryParams)(type("Plain", (LabelKind,), {"reference": None}))
    KINDS.register("flipped", config_cls=BinaryParams)(type("Flipped", (LabelKind,), {
        "reference": Vote(labels=lambda t: 1 - t.long(), as_target=lambda labels: labels)}))
    assert TaskKind.reference is None and not hasattr(TaskKind, "labels") and not hasattr(TaskKind, "scores_of_mse")
    train = [(torch.tensor([float(i)]), torch.tensor(i // 3), 0) for i in range(6)]
    evaluation = [(torch.tensor([0.0]), torch.tensor(0), 0), (torch.tensor([5.0]), torch.tensor(1), 0)]
    assert reference_score(TaskSpec("t", kind="plain"), train, evaluation) is None
    # the vote runs over the labels the Vote maps targets to (flipped here, and not flipped back): all wrong
    assert reference_score(TaskSpec("t", kind="flipped"), train, evaluation)["score"] == 0.0
