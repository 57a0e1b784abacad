import math

import numpy as np
import pytest

from benchmark.outputs.metrics import cl_metrics, task_forgetting

# Hand-computed 3×3 case. Rows: after experience i; columns: task j.
R = [[0.90, 0.20, 0.10],
     [0.80, 0.85, 0.30],
     [0.60, 0.70, 0.95]]
B = [0.50, 0.10, 0.20]


def test_hand_computed_3x3():
    m = cl_metrics(R, B)
    assert m["acc"] == pytest.approx((0.60 + 0.70 + 0.95) / 3)  # 0.75
    assert m["bwt"] == pytest.approx(((0.60 - 0.90) + (0.70 - 0.85)) / 2)  # -0.225
    assert m["forgetting"] == pytest.approx(((0.90 - 0.60) + (0.85 - 0.70)) / 2)  # 0.225
    assert m["fwt"] == pytest.approx(((0.20 - 0.10) + (0.30 - 0.20)) / 2)  # 0.1


def test_forgetting_takes_the_max_after_training_not_the_diagonal():
    r = np.array(R)
    r[1, 0] = 0.95  # task 0 improved after experience 1, then dropped to 0.60
    m = cl_metrics(r, B)
    assert m["forgetting"] == pytest.approx(((0.95 - 0.60) + (0.85 - 0.70)) / 2)  # 0.25
    assert m["bwt"] == pytest.approx(-0.225)  # BWT compares with R[j, j] only
    assert task_forgetting(r) == pytest.approx([0.95 - 0.60, 0.85 - 0.70])  # per task; the last has none


def test_untrained_scores_before_training_do_not_count_as_learnt():
    r = np.array(R)
    r[0, 1] = 0.99  # head 1 scores high before task 1 is trained: not knowledge that can be forgotten
    assert cl_metrics(r)["forgetting"] == pytest.approx(0.225)


def test_joint_single_row_and_single_task_are_not_applicable():
    joint = cl_metrics([[0.9, 0.8, 0.7]], B)
    assert joint["acc"] == pytest.approx(0.8)
    assert joint["bwt"] is None and joint["forgetting"] is None and joint["fwt"] is None
    single = cl_metrics([[0.7]])
    assert single == {"acc": pytest.approx(0.7), "bwt": None, "forgetting": None, "fwt": None}


def test_fwt_needs_the_untrained_scores():
    assert cl_metrics(R)["fwt"] is None
    with pytest.raises(ValueError):
        cl_metrics(R, [0.1, 0.2])


def test_input_is_not_modified_and_no_forgetting_gives_zero():
    r = np.array([[0.5, 0.1], [0.5, 0.9]])
    before = r.copy()
    m = cl_metrics(r)
    assert np.array_equal(r, before)
    assert m["bwt"] == 0 and m["forgetting"] == 0 and not math.isnan(m["acc"])


def test_bad_shape():
    with pytest.raises(ValueError):
        cl_metrics([1.0, 2.0])
