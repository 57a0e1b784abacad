"""wandb logging, read back from the files wandb itself writes (no mocks of wandb)."""

import csv
import json
import sys

import pytest

from benchmark.config import parse_config
from benchmark.harness.run import run
from benchmark.outputs.results import read_matrix
from tests.wandb_records import read_run


@pytest.fixture
def no_wandb_env(monkeypatch, tmp_path):
    for var in ("WANDB_API_KEY", "WANDB_PROJECT", "WANDB_ENTITY", "WANDB_MODE", "WANDB_DIR"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no ~/.netrc key, no ~/.config/wandb settings
    # The "server": a loopback port nothing listens on, so no test ever sends traffic off this machine.
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")


def test_offline_run_logs_R_per_experience_and_the_summary(tiny, no_wandb_env):
    folder, _ = run(parse_config(tiny("--strategy", "naive", "--wandb", "offline"))[0])
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["wandb"]["mode"] == "offline"
    logged = read_run(next((folder.parents[3] / "wandb").glob("offline-run-*")))

    tasks, labels, R = read_matrix(folder / "matrix.csv")
    evals = sorted((h for h in logged["history"] if "experience" in h), key=lambda h: h["experience"])
    assert [h["experience"] for h in evals] == [-1, 0, 1, 2]  # init, then one point per experience
    for h, row in zip(evals, R, strict=True):
        assert [h[f"eval/{t}"] for t in tasks] == pytest.approx(row, abs=1e-6)
        assert all(h[f"eval_loss/{t}"] > 0 for t in tasks)
    for key in ("acc", "bwt", "forgetting", "fwt"):
        assert logged["summary"][key] == pytest.approx(summary[key])
    losses = [h["train/loss"] for h in logged["history"] if "train/loss" in h]
    assert len(losses) == [h["train/iteration"] for h in logged["history"] if "train/iteration" in h][-1] + 1 > 3
    assert logged["summary"]["R/_type"] == "table-file" and logged["summary"]["R/nrows"] == 4
    assert logged["summary"]["R_heatmap/_type"] == "image-file"
    assert logged["config"]["strategy"] == "naive" and logged["config"]["seed"] == 0


def test_online_without_network_warns_once_and_keeps_results(tiny, no_wandb_env, capfd):
    folder, status = run(parse_config(tiny("--strategy", "naive", "--wandb", "online"))[0])
    err = capfd.readouterr().err
    warnings = [line for line in err.splitlines() if line.startswith("[wandb]")]
    assert status == "done" and (folder / "summary.json").is_file() and (folder / "heatmap.png").is_file()
    assert len(warnings) == 1 and "cannot reach http://127.0.0.1:9" in warnings[0]
    assert json.loads((folder / "summary.json").read_text())["wandb"]["mode"] == "offline"  # logged, to sync later


def test_wandb_missing_is_one_warning_not_a_failure(tiny, no_wandb_env, monkeypatch, capfd):
    monkeypatch.setitem(sys.modules, "wandb", None)  # `import wandb` now raises ImportError, as if not installed
    folder, status = run(parse_config(tiny("--strategy", "naive", "--wandb", "offline"))[0])
    warnings = [line for line in capfd.readouterr().err.splitlines() if line.startswith("[wandb]")]
    assert status == "done" and len(warnings) == 1 and "ModuleNotFoundError" in warnings[0]
    assert json.loads((folder / "summary.json").read_text())["wandb"]["mode"] == "off"


def test_wandb_flags_do_not_change_a_runs_identity(tiny, no_wandb_env):
    folder, _ = run(parse_config(tiny("--strategy", "naive"))[0])
    assert run(parse_config(tiny("--strategy", "naive", "--wandb", "offline"))[0]) == (folder, "skipped")


@pytest.fixture
def rejecting_server():
    """A wandb 'server' on loopback that answers every request 401, as the real one does for a bad API key."""
    import http.server
    import threading

    class Reject(http.server.BaseHTTPRequestHandler):
        def _reject(self):
            self.send_response(401)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"errors": [{"message": "invalid api key"}]}')

        do_GET = do_POST = do_PUT = _reject

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Reject)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_online_with_a_bad_key_warns_once_and_keeps_results(tiny, no_wandb_env, rejecting_server, monkeypatch,
                                                            capfd):
    monkeypatch.setenv("WANDB_BASE_URL", rejecting_server)
    monkeypatch.setenv("WANDB_API_KEY", "0" * 40)
    folder, status = run(parse_config(tiny("--strategy", "naive", "--wandb", "online"))[0])
    err = capfd.readouterr().err
    assert status == "done" and (folder / "summary.json").is_file()
    assert [line for line in err.splitlines() if "wandb" in line.lower() and "seed0" not in line] == [
        "[wandb] warning: wandb failed (CommError: invalid api key); stopped logging; local results are unaffected"]
    assert "CommError" in json.loads((folder / "summary.json").read_text())["wandb"]["error"]


def test_a_batch_logs_one_summary_run_with_the_leaderboard_and_mean_R_heatmaps(tiny, no_wandb_env, tmp_path):
    from benchmark.cli import main

    assert main(["batch", *tiny("--strategies", "naive,lwf", "--seeds", "0", "--wandb", "offline")]) == 0
    runs = [read_run(d) for d in (tmp_path / "results" / "wandb").glob("offline-run-*")]
    (summary,) = [r for r in runs if r["config"].get("profile") == "smoke"]
    assert len(runs) == 3  # two runs and the batch's summary
    assert summary["summary"]["leaderboard/_type"] == "table-file" and summary["summary"]["leaderboard/nrows"] == 2
    for strategy in ("naive", "lwf"):
        assert summary["summary"][f"R_mean/binary_tasks_{strategy}/_type"] == "image-file"


def test_a_multi_task_run_logs_its_epochs_gradients_and_final_scores(no_wandb_env, tmp_path, fmnist_root):
    from benchmark.cli import main
    from tests.test_golden import MTL_TINY

    assert main(["mtl", "--architecture", "shared-bottom", "--data-root", str(fmnist_root), "--out-dir",
                 str(tmp_path), *MTL_TINY, "--wandb", "offline"]) == 0
    (folder,) = (tmp_path / "mtl" / "runs").glob("*/seed0")
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["wandb"]["mode"] == "offline"
    logged = read_run(next((tmp_path / "wandb").glob("offline-run-*")))
    epochs = [h for h in logged["history"] if "epoch" in h]
    assert [h["epoch"] for h in epochs] == [e["epoch"] for e in summary["epochs"]] == [0, 1]
    for h, e in zip(epochs, summary["epochs"], strict=True):
        assert h["epoch/val_total"] == pytest.approx(e["val_total"])
        for t, v in e["gradients"]["last_shared_norm"].items():
            assert h[f"epoch/grad_norm/{t}"] == pytest.approx(v) and v > 0
        assert h.keys() >= {f"epoch/grad_cos_shared/{pair}" for pair in e["gradients"]["shared_cosine"]}
    assert logged["summary"]["acc"] == pytest.approx(summary["acc"])
    assert logged["summary"]["R/_type"] == "table-file"


def test_a_multi_task_batch_logs_one_summary_run_with_the_leaderboard_and_the_pareto_front(no_wandb_env, tmp_path,
                                                                                          fmnist_root):
    from benchmark.mtl.batch import run_mtl_batch
    from tests.test_mtl_run import TINY

    profile = {"kind": "mtl", "seeds": [0], "experiments": [
        {"name": "equal", "tasks": "classes,coarse"},
        {"name": "static", "tasks": "classes,coarse", "weighting": "static", "static.weights": "2,1"}]}
    run_args = ["--data-root", str(fmnist_root), "--out-dir", str(tmp_path), *TINY, "--wandb", "offline"]
    assert run_mtl_batch("tiny-mtl", profile, run_args) == 0
    runs = [read_run(d) for d in (tmp_path / "wandb").glob("offline-run-*")]
    (summary,) = [r for r in runs if r["config"].get("profile") == "tiny-mtl"]
    assert len(runs) == 5  # the two experiments, their two derived single-task baselines, the batch's summary
    with open(tmp_path / "mtl" / "summary.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert summary["summary"]["leaderboard/_type"] == "table-file"
    assert summary["summary"]["leaderboard/nrows"] == len(rows) > 4  # experiments, baselines, trivial references
    assert summary["summary"]["pareto/_type"] == "table-file" and summary["summary"]["pareto/nrows"] == 2
    md = (tmp_path / "mtl" / "summary.md").read_text()
    front = [name for name in ("equal", "static") if f"| **{name}** |" in md]  # bold = on the report's front
    assert front and summary["summary"]["pareto_front"] == front
    assert summary["summary"]["val_curves/_type"] == "image-file"
