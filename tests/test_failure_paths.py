"""What happens when things go wrong: broken or half-written run folders, a second process on the same results,
stale reports, unreadable data, full disks. Each ends in one line naming the fix, or is repaired and said so."""

import builtins
import errno
import io
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from benchmark.cli import main
from benchmark.config import parse_config
from benchmark.errors import UserError
from benchmark.grid.batch import run_batch
from benchmark.harness.run import run
from benchmark.outputs.report import collect, write_report
from benchmark.outputs.results import read_matrix
from tests.conftest import tiny_args
from tests.test_cli import error_line

REPO = Path(__file__).resolve().parent.parent


def naive_folder(results: Path, strategy: str = "naive") -> Path:
    return results / "runs" / "binary_tasks" / strategy / "seed0"


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# --- item 12: --debug shows the cause of a wrapped error -------------------------------------------------------


def test_wrapped_weight_loading_errors_keep_their_cause(tmp_path, monkeypatch):
    from benchmark.models.dino import DinoConfig, build_pretrained_vit
    from benchmark.models.efficientnet_b0_fpn import EfficientNetFPNConfig, efficientnet_b0_fpn
    from benchmark.models.pretrained_weights import from_hub

    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="does not hold") as e:
        build_pretrained_vit("dino_vits16", "vit_small_patch16_224.dino",
                             DinoConfig(img_size=32, embed_dim=32, depth=1, num_heads=2), str(junk))
    assert e.value.__cause__ is not None
    with pytest.raises(UserError, match="does not hold efficientnet_b0") as e:
        efficientnet_b0_fpn(EfficientNetFPNConfig(), image_size=32, in_chans=1, weights=str(junk))
    assert e.value.__cause__ is not None

    import socket

    import huggingface_hub

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: (_ for _ in ()).throw(OSError("no route")))
    with pytest.raises(UserError, match="unreachable") as e:
        from_hub("dino_vits16", "timm/x")
    assert isinstance(e.value.__cause__, OSError)

    class Conn:
        def close(self):
            pass

    def failing_download(*a, **k):
        raise RuntimeError("hub says no")

    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: Conn())
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", failing_download)
    with pytest.raises(UserError, match="hub failed") as e:
        from_hub("dino_vits16", "timm/x")
    assert isinstance(e.value.__cause__, RuntimeError)


# --- item 14: a run counts as done only when its files parse and agree -------------------------------------------


@pytest.mark.parametrize("damage,why", [
    (lambda f: (f / "summary.json").write_text('{"acc": 0.9'), "summary.json unreadable"),
    (lambda f: (f / "matrix.csv").unlink(), "matrix.csv missing"),
    (lambda f: (f / "config.json").write_text(""), "config.json unreadable"),
    (lambda f: (f / "matrix.csv").write_text("\n".join((f / "matrix.csv").read_text().splitlines()[:-1]) + "\n"),
     "matrix.csv has 3 evaluation rows, summary.json 4"),
    (lambda f: (f / "matrix.csv").write_text((f / "matrix.csv").read_text().replace("t0_", "t9_")),
     "tasks differ"),
    # a run written before the protocol fixes (no "protocol" in config.json): same config, incomparable numbers
    (lambda f: (f / "config.json").write_text(json.dumps({k: v for k, v in json.loads(
        (f / "config.json").read_text()).items() if k != "protocol"})), "computed under protocol 1, not 3"),
])
def test_an_incomplete_run_folder_is_redone_and_named(damage, why, tiny, tmp_path, capsys):
    results = tmp_path / "results"
    assert main(["run", *tiny()]) == 0
    folder = naive_folder(results)
    good = (folder / "summary.json").read_text()
    damage(folder)
    capsys.readouterr()
    runs = collect(results)
    err = capsys.readouterr().err
    assert runs.empty and str(folder) in err and why in err  # the report names it, not silently drops it

    assert main(["run", *tiny()]) == 0
    err = capsys.readouterr().err
    assert f"[run] {folder} is incomplete ({why}" in err and "redoing it" in err
    assert json.loads((folder / "summary.json").read_text())["tasks"] == json.loads(good)["tasks"]
    assert len(collect(results)) == 1


def test_batch_redoes_an_incomplete_run_and_its_report_names_a_broken_one(tmp_path, fmnist_root, capsys):
    results = tmp_path / "results"
    args = tiny_args(results, fmnist_root)[2:]
    assert run_batch("smoke", args, strategies=["naive", "joint"]) == 0
    (naive_folder(results) / "matrix.csv").unlink()
    capsys.readouterr()
    assert run_batch("smoke", args, strategies=["naive", "joint"]) == 0
    err = capsys.readouterr().err
    assert "naive/seed0: done" in err and "joint/seed0: skipped" in err
    (naive_folder(results, "joint") / "summary.json").write_text("")
    write_report(results)
    report = (results / "REPORT.md").read_text()
    assert "Incomplete run folders" in report and str(naive_folder(results, "joint")) in report
    assert "| naive |" in report and "| joint |" not in report


# --- item 15: run identity does not depend on how a path is spelled ----------------------------------------------


def test_same_results_and_data_under_another_spelling_are_the_same_run(tiny, tmp_path, fmnist_root, monkeypatch,
                                                                        capsys):
    assert main(["run", *tiny()]) == 0
    folder = naive_folder(tmp_path / "results")
    before = (folder / "summary.json").read_bytes()
    copy = tmp_path / "data-copy"
    shutil.copytree(fmnist_root, copy)
    monkeypatch.chdir(tmp_path)
    for out, data in (("results", fmnist_root), ("./results/../results", "data-copy")):
        capsys.readouterr()
        assert main(["run", *tiny_args(Path(out), Path(data))]) == 0
        assert "skipped" in capsys.readouterr().err
    assert (folder / "summary.json").read_bytes() == before

    raw = copy / "FashionMNIST" / "raw" / "t10k-labels-idx1-ubyte"
    raw.write_bytes(raw.read_bytes()[:-1] + bytes([(raw.read_bytes()[-1] + 1) % 10]))  # other data, same layout
    assert main(["run", *tiny_args(Path("results"), Path("data-copy"))]) == 2
    line = error_line(capsys)
    assert "different config (data sha256" in line and "--force" in line


def test_a_different_config_names_the_keys_and_both_ways_out(tiny, tmp_path, capsys):
    assert main(["run", *tiny()]) == 0
    assert main(["run", *tiny("--epochs", "2", "--lr", "0.01")]) == 2
    line = error_line(capsys)
    folder = naive_folder(tmp_path / "results")
    assert f"{folder} holds results of a different config (epochs: 3 → 2, lr: 0.005 → 0.01)" in line
    assert "pass --force to replace them, or another --out-dir" in line


# --- item 16: a second process on the same results folder --------------------------------------------------------


HOLD = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from benchmark.outputs.results import claim_run_folder
    claim_run_folder(Path(sys.argv[1]), {}, Path(sys.argv[2]), force=False)
    print("claimed", flush=True)
    time.sleep(120)
""")


@pytest.fixture
def holder(tmp_path):
    """A real second process that has claimed a run folder and is still "training" it."""
    procs = []

    def start(folder: Path) -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-c", HOLD, str(folder), str(tmp_path / "results")], cwd=REPO,
                                stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "claimed"
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        proc.kill()
        proc.wait()


def test_a_run_claimed_by_a_live_process_is_skipped_then_done_once_it_dies(tiny, tmp_path, holder, capsys):
    folder = naive_folder(tmp_path / "results")
    proc = holder(folder)
    assert main(["run", *tiny()]) == 0
    err = capsys.readouterr().err
    assert f"running in another process (pid {proc.pid}); skipped" in err and not folder.exists()
    proc.kill()  # kill -9: the lock goes with the process; its lock file stays behind
    proc.wait()
    assert main(["run", *tiny()]) == 0 and (folder / "summary.json").is_file()
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")]


def test_a_second_batch_skips_what_the_first_is_running_and_fails_nothing(tmp_path, fmnist_root, holder, capsys):
    results = tmp_path / "results"
    proc = holder(naive_folder(results, "lwf"))
    code = run_batch("smoke", tiny_args(results, fmnist_root)[2:], strategies=["naive", "lwf"])
    err = capsys.readouterr().err
    assert code == 0 and f"lwf/seed0: skipped (running in another process (pid {proc.pid}))" in err
    assert "naive/seed0: done" in err and "Failed" not in (results / "REPORT.md").read_text()


def test_a_stale_lock_of_a_dead_process_does_not_block(tiny, tmp_path):
    folder = naive_folder(tmp_path / "results")
    folder.parent.mkdir(parents=True)
    (folder.parent / f".{folder.name}.lock").write_text(str(dead_pid()))
    assert run(parse_config(tiny())[0]) == (folder, "done")


def test_losing_a_race_to_the_same_config_is_success(tiny, tmp_path):
    from benchmark.outputs.results import write_run

    folder, _ = run(parse_config(tiny())[0])
    files = {n: (folder / n).read_text() for n in ("config.json", "matrix.csv", "summary.json")}
    record, summary = json.loads(files["config.json"]), json.loads(files["summary.json"])
    assert write_run(folder, record, files["matrix.csv"], summary) == folder  # another process finished first
    assert {n: (folder / n).read_text() for n in files} == files
    record["config"]["epochs"] = 7
    with pytest.raises(UserError, match="different config"):
        write_run(folder, record, files["matrix.csv"], summary)


# --- item 17: the report is replaced as a whole ------------------------------------------------------------------


def test_report_replaces_every_file_it_owns_and_never_touches_runs(tmp_path, fmnist_root, capsys):
    results = tmp_path / "results"
    for strategy in ("naive", "lwf"):
        assert main(["run", *tiny_args(results, fmnist_root, "--strategy", strategy)]) == 0
    write_report(results)
    assert (results / "figures" / "binary_tasks_lwf_R.png").is_file()
    shutil.rmtree(naive_folder(results, "lwf"))
    write_report(results)
    assert not (results / "figures" / "binary_tasks_lwf_R.png").exists()
    assert "lwf" not in (results / "summary.csv").read_text()

    (naive_folder(results) / "summary.json").write_text("")  # now no run is readable
    before = sorted(p.relative_to(results) for p in (results / "runs").rglob("*"))
    write_report(results)
    left = sorted(p.name for p in results.iterdir())
    assert left == ["REPORT.md", "runs", "summary.md"]  # no CSV, LaTeX or figures of the previous numbers
    assert "No completed runs" in (results / "REPORT.md").read_text()
    assert str(naive_folder(results)) in (results / "REPORT.md").read_text()
    assert sorted(p.relative_to(results) for p in (results / "runs").rglob("*")) == before


def test_batch_with_only_failures_still_writes_the_report_it_announces(tmp_path, fmnist_root, capsys):
    results = tmp_path / "results"
    assert run_batch("smoke", [*tiny_args(results, fmnist_root)[2:], "--lr", "1e30"], strategies=["naive"]) == 1
    err = capsys.readouterr().err
    assert f"wrote {results / 'REPORT.md'}" in err
    assert "naive/seed0" in (results / "REPORT.md").read_text()


# --- item 18: temp folders of a killed writer are removed ------------------------------------------------------


def test_temp_folders_of_dead_writers_are_removed(tiny, tmp_path):
    folder = naive_folder(tmp_path / "results")
    folder.parent.mkdir(parents=True)
    stale = [folder.parent / f".{folder.name}.tmp-{dead_pid()}-1", folder.parent / f".{folder.name}.old-{dead_pid()}-2"]
    live = folder.parent / f".{folder.name}.tmp-{os.getppid()}-3"  # a live process's, recent: not ours to remove
    for d in (*stale, live):
        d.mkdir()
        (d / "config.json").write_text("{}")
    run(parse_config(tiny())[0])
    assert not any(d.exists() for d in stale) and live.exists()


def test_lock_files_of_killed_processes_are_removed_and_a_live_holders_kept(tiny, tmp_path, holder):
    """A kill leaves `.seed<k>.lock` behind (empty if killed before writing its pid, else the pid); the next claim
    in that folder removes each no process holds, and never one a live process holds."""
    from benchmark.outputs.run_lock import lock_run_folder

    folder = naive_folder(tmp_path / "results")
    live = holder(folder.with_name("seed1"))
    killed = holder(folder.with_name("seed2"))
    killed.kill()  # kill -9: its lock goes, its file (its pid) stays
    killed.wait()
    (folder.parent / ".seed3.lock").write_text("")  # killed between creating the file and writing its pid
    assert (folder.parent / ".seed2.lock").read_text() == str(killed.pid)
    assert run(parse_config(tiny())[0]) == (folder, "done")
    assert sorted(p.name for p in folder.parent.iterdir() if p.name.startswith(".")) == [".seed1.lock"]
    assert lock_run_folder(folder.with_name("seed1")) == str(live.pid)  # still held by the live process


def test_a_claim_that_meets_a_stale_lock_being_checked_waits_for_it(tmp_path):
    """remove_stale_locks holds a dead holder's lock for an instant to prove it stale: a claimer meeting it then
    tries again instead of taking the run for running elsewhere."""
    import fcntl
    import threading

    from benchmark.outputs.run_lock import lock_run_folder, release_run_folder

    folder = tmp_path / "runs" / "seed0"
    folder.parent.mkdir(parents=True)
    lock = folder.parent / ".seed0.lock"
    lock.write_text(str(dead_pid()))
    fd = os.open(lock, os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    threading.Timer(0.05, os.close, [fd]).start()  # let go 50 ms later
    try:
        assert lock_run_folder(folder) == ""
    finally:
        release_run_folder(folder)


def test_report_build_folders_of_dead_builders_are_removed(tmp_path, fmnist_root):
    results = tmp_path / "results"
    assert main(["run", *tiny_args(results, fmnist_root)]) == 0
    stale = [results / ".report-k2x9q1w_", results / f".report-{dead_pid()}-abc"]  # before and with a pid
    live = results / f".report-{os.getppid()}-xyz"  # a live process's, recent: not ours to remove
    for d in (*stale, live):
        d.mkdir()
    write_report(results)
    assert not any(d.exists() for d in stale) and live.exists()
    assert sorted(p.name for p in results.iterdir() if p.name.startswith(".")) == [live.name]


# --- item 19: one line naming the fix, not a library error ------------------------------------------------------


def _broken_fmnist(tmp_path, fmnist_root, name, damage) -> Path:
    root = tmp_path / "broken-data"
    shutil.copytree(fmnist_root, root)
    path = root / "FashionMNIST" / "raw" / name
    path.write_bytes(damage(path.read_bytes()))
    return path


@pytest.mark.parametrize("name,damage,why", [
    ("train-images-idx3-ubyte", lambda b: b[: len(b) // 2], "truncated"),
    ("t10k-labels-idx1-ubyte", lambda b: b"", "empty"),
    ("train-labels-idx1-ubyte", lambda b: b"\x00\x00\x08\x03" + b[4:], "magic"),
])
def test_broken_fashion_mnist_files_name_the_file_and_the_fix(name, damage, why, tmp_path, fmnist_root, capsys):
    path = _broken_fmnist(tmp_path, fmnist_root, name, damage)
    assert main(["run", *tiny_args(tmp_path / "results", path.parents[2])]) == 2
    line = error_line(capsys)
    assert str(path) in line and why in line and "delete" in line


def test_a_manifest_holding_a_list_is_a_corrupt_entry_that_gets_rebuilt(tiny, tmp_path, capsys):
    flags = ("--backbone-mode", "frozen", "--cache-dir", str(tmp_path / "cache"))
    folder, _ = run(parse_config(tiny(*flags))[0])
    manifests = list((tmp_path / "cache").rglob("manifest.json"))
    assert len(manifests) == 2
    for m in manifests:
        m.write_text("[]")
    R = read_matrix(folder / "matrix.csv")[2]
    capsys.readouterr()
    folder, _ = run(parse_config(tiny(*flags, "--out-dir", str(tmp_path / "again")))[0])
    assert "feature cache miss (corrupt" in capsys.readouterr().err
    np.testing.assert_array_equal(read_matrix(folder / "matrix.csv")[2], R)
    assert all(isinstance(json.loads(m.read_text()), dict) for m in manifests)


def test_small_cnn_backbone_runs(tiny):
    folder, status = run(parse_config(tiny("--backbone", "small_cnn", "--small_cnn.channels", "4,8"))[0])
    assert status == "done" and "small_cnn" in json.loads((folder / "config.json").read_text())["backbone"]["arch"]


@pytest.mark.parametrize("flags,fragment", [
    (["--vit_tiny.num-heads", "0"], "--vit_tiny.num-heads"),
    (["--vit_tiny.patch-size", "0"], "--vit_tiny.patch-size"),
    (["--vit_tiny.embed-dim", "0"], "--vit_tiny.embed-dim"),
    (["--vit_tiny.depth", "0"], "--vit_tiny.depth"),
    (["--vit_tiny.mlp-ratio", "0"], "--vit_tiny.mlp-ratio"),
    (["--vit_tiny.patch-size", "5"], "not divisible by --vit_tiny.patch-size 5"),
    (["--small_cnn.channels", "4", "--backbone", "small_cnn", "--backbone-weights", "w.pth"], "--backbone-weights"),
])
def test_bad_backbone_sizes_are_one_line(flags, fragment, tiny, capsys):
    assert main(["run", *tiny(*flags)]) == 2
    assert fragment in error_line(capsys)


@pytest.mark.parametrize("flags,fragment", [
    (["--seeds", ","], "--seeds"),
    (["--strategies", ","], "--strategies"),
    (["--streams", " , "], "--streams"),
])
def test_empty_batch_lists_are_one_line(flags, fragment, tmp_path, capsys):
    assert main(["batch", "--profile", "smoke", "--out-dir", str(tmp_path), *flags]) == 2
    assert fragment in error_line(capsys)


def test_out_dir_that_is_a_file_stops_the_batch_before_any_run(tmp_path, fmnist_root, capsys):
    blocker = tmp_path / "results"
    blocker.write_text("")
    code = main(["batch", "--profile", "smoke", *tiny_args(blocker, fmnist_root)[2:]])
    err = capsys.readouterr().err
    assert code == 2 and "[batch 1/" not in err
    line = err.strip().splitlines()[-1]
    assert line.startswith("hatswap: error: ") and f"{blocker} is a file" in line and "--out-dir" in line


def test_cache_dir_that_is_a_file_is_named(tiny, tmp_path, capsys):
    blocker = tmp_path / "cache"
    blocker.write_text("")
    assert main(["run", *tiny("--backbone-mode", "frozen", "--cache-dir", str(blocker))]) == 2
    line = error_line(capsys)
    assert str(blocker) in line and "--cache-dir" in line


@pytest.mark.parametrize("where", ["results", "cache"])
def test_a_full_disk_names_the_path(where, tiny, tmp_path, monkeypatch, capsys):
    full, real_open = tmp_path / where, io.open

    def no_space(path, mode="r", *a, **k):  # writing a temporary file under `full` (all writes go that way)
        if "w" in mode and str(path).startswith(str(full)) and ".tmp-" in str(path):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_open(path, mode, *a, **k)

    monkeypatch.setattr(io, "open", no_space)  # pathlib's writes
    monkeypatch.setattr(builtins, "open", no_space)  # open(path, "wb") for np.save
    code = main(["run", *tiny("--backbone-mode", "frozen", "--cache-dir", str(tmp_path / "cache"))])
    line = error_line(capsys)
    assert code == 2 and "No space left on device" in line and str(full) in line


def test_a_run_on_a_full_disk_stops_before_training_and_leaves_nothing(tiny, tmp_path, full_disk, capsys):
    """An empty probe file needs no free block: the up-front check passed, and the run's lock file (its pid written
    into it) then failed as a bare OSError, leaving the lock and its folders behind."""
    results = tmp_path / "results"
    full_disk(results)
    code = main(["run", *tiny("--strategy", "der")])
    line = error_line(capsys)
    assert code == 2 and f"cannot write results to {results}: No space left on device" in line
    assert "free space there or pass another --out-dir" in line
    assert not results.exists()  # the folder the check made is gone again too


def test_a_disk_that_fills_after_the_check_leaves_no_lock_behind(tmp_path, monkeypatch):
    from benchmark.outputs.results import claim_run_folder

    out = tmp_path / "results"
    folder = naive_folder(out)
    real_write = os.write

    def no_space(fd, data):  # the lock's pid: the first write after the check
        if os.readlink(f"/proc/self/fd/{fd}").startswith(str(out)):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", no_space)
    with pytest.raises(UserError, match=f"cannot write {folder}: No space left on device; free space there"):
        claim_run_folder(folder, {"seed": 0}, out, force=False)
    assert list(out.iterdir()) == []  # no lock file, nor the folders made for it


def test_an_unwritable_disk_anywhere_is_one_line_naming_the_file(monkeypatch, capsys):
    """A write the commands do not wrap themselves (a figure, a library's file) still names what it could not write."""
    import benchmark.cli

    def fails(argv):
        raise OSError(errno.ENOSPC, "No space left on device", "/somewhere/figure.png")

    monkeypatch.setitem(benchmark.cli.COMMANDS, "list", fails)
    assert main(["list"]) == 2
    line = error_line(capsys)
    assert "cannot write /somewhere/figure.png: No space left on device; free space there" in line
