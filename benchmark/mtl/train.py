"""The multi-task training loop: a schedule's stages over one image set labelled for every task.

Each step: a batch of images, the losses of the step's active tasks (all of the stage's, or one per batch
round-robin), `model.backward(losses)` (the weighting's backward pass), the global gradient norm clipped to
`--grad-clip` (when > 0), one Adam step (heads of tasks given a `--task-lr` at that lr). After every epoch: each
active task's mean training loss (fed to the weighting, e.g. DWA), every task's validation scores (loss and
metrics: what settings are tuned on; the test split is only for the final report) and the per-task gradient record
(benchmark/mtl/gradients.py: norms and cosines at the shared layers, on the first training batch). After a stage
with an eval label: every task's test scores → one row of R.
"""

from __future__ import annotations

import time
from collections import defaultdict

import torch

from benchmark.errors import check_finite_losses
from benchmark.mtl.gradients import monitor
from benchmark.mtl.model import MultiTaskModel
from benchmark.tasks import kind_of


@torch.no_grad()
def evaluate(model: MultiTaskModel, x: torch.Tensor, y: dict, batch_size: int, device) -> dict[str, dict]:
    """→ {task: {'loss', primary metric, secondary metrics}} over the whole split, every task of the model."""
    was_training = model.training
    model.eval()
    sums, metrics = defaultdict(float), {s.name: kind_of(s).metric(s) for s in model.tasks}
    for start in range(0, len(x), batch_size):
        xb = x[start:start + batch_size].to(device)
        preds = model(xb)
        for spec in model.tasks:
            target, out = y[spec.name][start:start + batch_size].to(device), preds[spec.name].flatten(1)
            sums[spec.name] += float(kind_of(spec).loss(out, target, spec)) * len(xb)
            metrics[spec.name].update(out, target)
    model.train(was_training)
    return {s.name: {"loss": sums[s.name] / max(len(x), 1)} | metrics[s.name].compute() for s in model.tasks}


def weighted(losses: dict[str, float], weights: dict[str, float]) -> float:
    return sum(weights.get(t, 0.0) * v for t, v in losses.items() if t in weights)


def train_stages(model: MultiTaskModel, data, stages, cfg, device, log=lambda msg: None):
    """→ (rows [(label, test scores per task)] starting with 'init', per-epoch log, training wall seconds)."""
    # Heads of tasks with their own lr (--task-lr) in their own groups; one group otherwise (model.param_groups).
    optimizer = torch.optim.Adam(model.param_groups(cfg.lr), lr=cfg.lr, weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(cfg.seed)
    x, y = data.x["train"], data.y["train"]
    rows = [("init", evaluate(model, data.x["test"], data.y["test"], cfg.eval_batch_size, device))]
    epochs, train_s, epoch_no = [], 0.0, 0
    for k, stage in enumerate(stages):
        step = 0  # round-robin position carries across epochs, so every task gets its turn even with 1 batch/epoch
        for _ in range(stage.epochs):
            t0 = time.perf_counter()
            model.train()
            sums, counts, wsums = defaultdict(float), defaultdict(int), defaultdict(float)
            perm = torch.randperm(len(x), generator=gen)
            for start in range(0, len(x), cfg.batch_size):
                idx = perm[start:start + cfg.batch_size]
                active = (stage.tasks[step % len(stage.tasks)],) if stage.round_robin else stage.tasks
                step += 1
                preds = model(x[idx].to(device))
                losses = model.task_losses(preds, {t: y[t][idx].to(device) for t in active})
                values = {t: float(v.detach()) for t, v in losses.items()}
                check_finite_losses(values, f"at epoch {epoch_no}")
                optimizer.zero_grad(set_to_none=True)
                weights = model.backward(losses)
                if cfg.grad_clip:  # after the weighting's backward (PCGrad's surgery included), on every parameter
                    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                optimizer.step()
                for t, v in values.items():
                    sums[t] += v
                    counts[t] += 1
                    wsums[t] += weights[t]
            train_s += time.perf_counter() - t0
            train_loss = {t: sums[t] / counts[t] for t in sums}
            mean_w = {t: wsums[t] / counts[t] for t in sums}
            model.weighting.on_epoch_end(train_loss)
            val = evaluate(model, data.x["val"], data.y["val"], cfg.eval_batch_size, device) \
                if len(data.x.get("val", ())) else {}
            val_loss = {t: s["loss"] for t, s in val.items()}
            gradients = monitor(model, x[:cfg.batch_size].to(device),
                                {t: y[t][:cfg.batch_size].to(device) for t in model.task_names})
            epochs.append({"epoch": epoch_no, "stage": k, "active": list(stage.tasks), "train_loss": train_loss,
                           "val_loss": val_loss, "val": val, "weights": mean_w, "gradients": gradients,
                           "train_total": weighted(train_loss, mean_w), "val_total": weighted(val_loss, mean_w)})
            log(f"epoch {epoch_no} [{','.join(stage.tasks)}] train {epochs[-1]['train_total']:.4f} val "
                f"{epochs[-1]['val_total']:.4f} ({time.perf_counter() - t0:.1f}s)")
            epoch_no += 1
        if stage.eval_label:
            rows.append((stage.eval_label, evaluate(model, data.x["test"], data.y["test"], cfg.eval_batch_size,
                                                    device)))
    return rows, epochs, train_s
