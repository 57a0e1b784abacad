"""tests/golden_files.py: a golden check passes when the numbers equal one CPU kind's files to the last digit, and
fails when they equal none; HATSWAP_WRITE_GOLDEN writes tests/golden/ itself (1) or one CPU kind's sub-folder."""

import pytest

from tests import golden_files


@pytest.fixture
def golden(tmp_path, monkeypatch):
    monkeypatch.setattr(golden_files, "GOLDEN", tmp_path)
    monkeypatch.delenv("HATSWAP_WRITE_GOLDEN", raising=False)
    (tmp_path / "r.csv").write_text("a,0.100001\n")
    (tmp_path / "amx-cpu").mkdir()
    (tmp_path / "amx-cpu" / "r.csv").write_text("a,0.100002\n")
    (tmp_path / "m.txt").write_text("k1 x=1.0\nk2 x=2.0\n")
    (tmp_path / "amx-cpu" / "m.txt").write_text("k1 x=1.5\nk2 x=2.0\n")
    return tmp_path


def test_a_golden_file_matches_any_cpu_kind_to_the_last_digit_and_nothing_else(golden):
    golden_files.assert_golden("r.csv", "a,0.100001\n")
    golden_files.assert_golden("r.csv", "a,0.100002\n")
    with pytest.raises(AssertionError, match="2 CPU kind"):
        golden_files.assert_golden("r.csv", "a,0.100003\n")
    with pytest.raises(AssertionError, match="no golden file"):
        golden_files.assert_golden("new.csv", "a,1\n")


def test_golden_lines_match_any_cpu_kind_per_key(golden):
    golden_files.assert_golden_lines("m.txt", "k1", ["k1 x=1.0"])
    golden_files.assert_golden_lines("m.txt", "k1", ["k1 x=1.5"])
    with pytest.raises(AssertionError, match="moved for 'k2'"):
        golden_files.assert_golden_lines("m.txt", "k2", ["k2 x=2.5"])
    with pytest.raises(AssertionError, match="no golden lines"):
        golden_files.assert_golden_lines("m.txt", "k3", ["k3 x=3.0"])


def test_writing_goes_to_the_named_cpu_kind_or_to_the_main_folder(golden, monkeypatch):
    monkeypatch.setenv("HATSWAP_WRITE_GOLDEN", "other-cpu")
    golden_files.assert_golden("r.csv", "a,0.9\n")
    golden_files.assert_golden_lines("m.txt", "k2", ["k2 x=9.0"])
    assert (golden / "other-cpu" / "r.csv").read_text() == "a,0.9\n"
    assert (golden / "other-cpu" / "m.txt").read_text() == "k2 x=9.0\n"
    assert (golden / "r.csv").read_text() == "a,0.100001\n"  # the main folder untouched
    monkeypatch.setenv("HATSWAP_WRITE_GOLDEN", "1")
    golden_files.assert_golden_lines("m.txt", "k1", ["k1 x=7.0"])
    assert (golden / "m.txt").read_text() == "k1 x=7.0\nk2 x=2.0\n"  # in place, the other key kept
