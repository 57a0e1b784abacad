"""wandb logging for one run: one wandb run per (stream, strategy, seed), written by hatswap itself.

Avalanche's `WandBLogger` is not used: it breaks on current wandb (`wandb.viz`). What is logged:

    config               the run's full config (the same dict as config.json's "config")
    group / job_type     stream / strategy; name = "<stream>/<strategy>/seed<k>"
    train/loss           every training iteration, x-axis `train/iteration` (global over experiences)
    train/epoch_loss     mean training loss per epoch, x-axis `train/epoch` (global)
    eval/<task>          primary score of each task at every evaluation point, x-axis `experience`
    eval_loss/<task>     held-out loss of each task at the same points  (experience = -1: the untrained model)
    R, R_heatmap         the performance matrix as a wandb.Table and as the run's heatmap image
    summary              acc, bwt, forgetting, fwt (None where undefined), train_wall_s

and one summary run per batch (log_summary_run): a continual batch's leaderboard and mean-R heatmaps, a multi-task
batch's leaderboard, Pareto front and validation curves (benchmark/mtl/batch.py).

wandb must never fail or slow a run: every wandb call is guarded; the first failure prints one warning line and
turns the tracker off, and local results are written regardless. `online` checks the server and the API key
before starting (a few seconds at most); when either is missing it logs offline instead (`wandb sync` uploads it
later) and says so in one line.
"""

from __future__ import annotations

import netrc
import os
import socket
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlparse

from avalanche.core import SupervisedPlugin

from benchmark.runtime.state import Stateful

MODES = ("off", "offline", "online")
DEFAULT_PROJECT = "hatswap"


def _warn(msg: str) -> None:
    print(f"[wandb] warning: {msg}; local results are unaffected", file=sys.stderr, flush=True)


def _reachable(host: str, port: int, timeout_s: float) -> str | None:
    """None if a TCP connection opens within timeout_s, else why not. The probe runs in a daemon thread because a
    DNS lookup is not bounded by socket timeouts and can hang far longer on a machine without network."""
    result: list[str | None] = []

    def probe():
        try:
            socket.create_connection((host, port), timeout=timeout_s).close()
            result.append(None)
        except OSError as e:
            result.append(e.strerror or str(e))

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout_s + 0.5)
    return result[0] if result else f"no answer within {timeout_s:.0f} s"


def _online_blocker(timeout_s: float = 3.0) -> str | None:
    """Why an online run cannot start here (no server, no key), or None. Costs at most about `timeout_s`."""
    base = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")
    url = urlparse(base)
    host, port = url.hostname or "api.wandb.ai", url.port or (443 if url.scheme == "https" else 80)
    if (why := _reachable(host, port, timeout_s)) is not None:
        return f"cannot reach {base} ({why})"
    if os.environ.get("WANDB_API_KEY"):
        return None
    try:
        if netrc.netrc().authenticators(host):
            return None
    except (OSError, netrc.NetrcParseError):
        pass
    return f"no API key for {host} (set WANDB_API_KEY or run `wandb login`)"


class WandbTracker(Stateful, SupervisedPlugin):
    """An Avalanche plugin (training losses) plus explicit calls from the harness (evaluations, final results).
    `resume_id`: the wandb run of a run resumed from its checkpoint (benchmark/harness/checkpoint.py), continued
    rather than started anew; its iteration and epoch counters come back with the checkpoint."""

    state_attrs, rebuilt_attrs = ("_iteration", "_epoch"), ("run", "info", "_sum", "_n")

    def __init__(self, mode: str, *, project: str = "", entity: str = "", out_dir=".", name: str = "",
                 group: str = "", job_type: str = "", config: dict | None = None, resume_id: str = ""):
        super().__init__()
        self.run, self.info = None, {"mode": "off"}
        self._iteration, self._epoch, self._sum, self._n = 0, 0, 0.0, 0
        if mode == "off":
            return
        if mode == "online" and (why := _online_blocker()):
            _warn(f"--wandb online: {why}; logging offline to {out_dir}/wandb instead (upload later with "
                  f"`wandb sync`)")
            mode = "offline"
        try:
            self._start(mode, project or os.environ.get("WANDB_PROJECT") or DEFAULT_PROJECT,
                        entity or os.environ.get("WANDB_ENTITY") or None, str(out_dir), name, group, job_type, config,
                        resume_id)
        except Exception as e:  # noqa: BLE001  wandb raises many types (network, auth, usage); none may cost the run
            self._fail(e)

    def _start(self, mode, project, entity, out_dir, name, group, job_type, config, resume_id=""):
        import wandb  # imported only when used: it is slow to import and optional at run time

        os.makedirs(out_dir, exist_ok=True)
        os.environ.setdefault("WANDB_SILENT", "true")  # wandb's own banners would bury hatswap's one-line reports
        # wandb's error telemetry prints its own lines on stderr when its export fails; the user may turn it back on
        os.environ.setdefault("WANDB_ERROR_REPORTING", "false")
        # Read per run, not once per process: wandb's process-wide setup would otherwise keep the first run's server.
        where = {k: v for k, v in (("base_url", os.environ.get("WANDB_BASE_URL")),
                                   ("api_key", os.environ.get("WANDB_API_KEY"))) if v}
        self.run = wandb.init(mode=mode, project=project, entity=entity, dir=out_dir, name=name, group=group,
                              job_type=job_type, config=config, reinit="create_new",
                              **({"id": resume_id, "resume": "allow"} if resume_id else {}),
                              settings=wandb.Settings(silent=True, console="off", x_disable_stats=True,
                                                      init_timeout=60, **where))
        self.run.define_metric("train/iteration")
        self.run.define_metric("train/loss", step_metric="train/iteration")
        self.run.define_metric("train/epoch")
        self.run.define_metric("train/epoch_loss", step_metric="train/epoch")
        self.run.define_metric("experience")
        for prefix in ("eval/*", "eval_loss/*"):
            self.run.define_metric(prefix, step_metric="experience")
        self.info = {"mode": mode, "project": project, "id": self.run.id, "dir": self.run.dir}

    def _guard(self, fn) -> None:
        """Run one wandb call while tracking is on; on its first failure warn once and stop tracking."""
        if self.run is None:
            return
        try:
            fn()
        except Exception as e:  # noqa: BLE001  as in __init__
            self._fail(e)

    def _fail(self, e: Exception) -> None:
        _warn(f"wandb failed ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); stopped logging")
        run, self.run = self.run, None
        self.info = self.info | {"error": f"{type(e).__name__}: {e}"}
        if run is not None:
            try:
                run.finish(exit_code=1)
            except Exception:  # noqa: BLE001  the warning above already said wandb is off
                pass

    # --- Avalanche hooks: training losses -------------------------------------------------------------------
    def before_training_epoch(self, strategy, **kwargs):
        self._sum, self._n = 0.0, 0

    def after_training_iteration(self, strategy, **kwargs):
        if self.run is None:  # off: not even the float() (a device sync per step on GPU)
            return
        loss, n = float(strategy.loss.detach()), len(strategy.mb_y)
        self._sum, self._n = self._sum + loss * n, self._n + n
        self._guard(lambda: self.run.log({"train/iteration": self._iteration, "train/loss": loss}))
        self._iteration += 1

    def after_training_epoch(self, strategy, **kwargs):
        if self._n:
            self._guard(lambda: self.run.log({"train/epoch": self._epoch, "train/epoch_loss": self._sum / self._n}))
        self._epoch += 1

    # --- harness calls ---------------------------------------------------------------------------------------
    def log_eval(self, experience: int, task_names: list[str], scores: list[float], losses: list[float]) -> None:
        row = {"experience": experience, **{f"eval/{t}": s for t, s in zip(task_names, scores, strict=True)},
               **{f"eval_loss/{t}": v for t, v in zip(task_names, losses, strict=True)}}
        self._guard(lambda: self.run.log(row))

    def log_final(self, task_names: list[str], rows: list[tuple[str, list[float]]], summary: dict,
                  heatmap_png=None) -> None:
        def log():
            import wandb

            table = wandb.Table(columns=["eval_point", *task_names], data=[[label, *r] for label, r in rows])
            media = {"R": table}
            if heatmap_png is not None:
                media["R_heatmap"] = wandb.Image(str(heatmap_png))
            self.run.log(media)
            for key in ("acc", "bwt", "forgetting", "fwt", "train_wall_s"):
                self.run.summary[key] = summary.get(key)

        self._guard(log)

    def log_epochs(self, epochs: list[dict]) -> None:
        """A multi-task run's per-epoch record after the fact (its runs take seconds), one wandb step per epoch:
        `epoch/*` = per-task train and val loss, weight, gradient norm and pairwise gradient cosines
        (benchmark/mtl/gradients.py) and the weighted totals."""
        def log():
            self.run.define_metric("epoch")
            self.run.define_metric("epoch/*", step_metric="epoch")
            for e in epochs:
                g = e.get("gradients") or {}
                row = {"epoch": e["epoch"], "epoch/train_total": e["train_total"], "epoch/val_total": e["val_total"]}
                for name, per_key in (("train_loss", e["train_loss"]), ("val_loss", e["val_loss"]),
                                      ("weight", e["weights"]), ("grad_norm", g.get("last_shared_norm", {})),
                                      ("grad_cos_last", g.get("last_shared_cosine", {})),
                                      ("grad_cos_shared", g.get("shared_cosine", {}))):
                    row |= {f"epoch/{name}/{k}": v for k, v in per_key.items()}
                self.run.log(row)

        self._guard(log)

    def finish(self, exit_code: int = 0) -> None:
        self._guard(lambda: self.run.finish(exit_code=exit_code))
        self.run = None


def log_summary_run(mode: str, content: Callable[[], tuple[dict, dict, dict]], *, project: str = "",
                    entity: str = "", out_dir=".", profile: str = "") -> dict:
    """One wandb run per batch (group = the profile, job_type "summary"), after its report. content() → (tables
    {key: (columns, rows)}, images {key: png path}, summary values {key: value}), read inside the guard, so a
    missing or unreadable report file costs only this run; offline-safe and failure-proof like the per-run logging.
    → its info (mode, id, dir; or the error)."""
    tracker = WandbTracker(mode, project=project, entity=entity, out_dir=out_dir, name=f"{profile} summary",
                           group=profile, job_type="summary", config={"profile": profile})

    def log():
        import wandb

        tables, images, values = content()
        media = {key: wandb.Table(columns=list(columns), data=[list(r) for r in rows])
                 for key, (columns, rows) in tables.items()}
        tracker.run.log(media | {key: wandb.Image(str(png)) for key, png in images.items()})
        for key, value in values.items():
            tracker.run.summary[key] = value

    tracker._guard(log)
    info = tracker.info
    tracker.finish()
    return info


def log_batch_summary(mode: str, *, project: str = "", entity: str = "", out_dir=".", profile: str = "",
                      report_dir=".") -> dict:
    """A continual batch's summary run (log_summary_run): the leaderboard (`summary.csv`) as a table and every
    stream × strategy's mean-R heatmap (`figures/*_R.png`). → its info."""
    def content():
        import csv

        with open(Path(report_dir) / "summary.csv", newline="") as f:
            header, *rows = list(csv.reader(f))
        images = {f"R_mean/{png.stem.removesuffix('_R')}": png
                  for png in sorted((Path(report_dir) / "figures").glob("*_R.png"))}
        return {"leaderboard": (header, rows)}, images, {}

    return log_summary_run(mode, content, project=project, entity=entity, out_dir=out_dir, profile=profile)
