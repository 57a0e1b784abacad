"""Δm and transfer gain against hand-computed values: reconstruction enters through its MSE (l = 1), and each
multi-task run is compared with the single-task run of the same trunk only (never a mismatched one)."""

import pytest

from benchmark.mtl.architectures.mmoe import MMoEConfig
from benchmark.mtl.batch import plan
from benchmark.mtl.config import MTLConfig
from benchmark.mtl.report import current_schema, markdown, table
from benchmark.mtl.transfer import trunk_key

MSE_MEAN = 0.1  # the mean image's error: recon_score = 1 − MSE / 0.1


def fake_run(name, tasks, acc=None, mse=None, seed=0, **cfg):
    """A run as `report.collect` returns it: summary.json | {"config": config.json's config}."""
    final = {}
    if "classes" in tasks:
        final["classes"] = {"loss": 0.5, "accuracy": acc}
    if "reconstruction" in tasks:
        final["reconstruction"] = {"loss": mse, "mse": mse, "recon_score": 1 - mse / MSE_MEAN, "psnr": 20.0}
    primary = {"classes": "accuracy", "reconstruction": "recon_score"}
    c = MTLConfig(name=name, tasks=",".join(tasks), seed=seed, **cfg)
    return {"name": name, "seed": seed, "tasks": list(tasks), "architecture": c.architecture,
            "weighting": c.weighting, "schedule": c.schedule, "metric_units": {t: primary[t] for t in tasks},
            "final_metrics": final, "final": [final[t][primary[t]] for t in tasks],
            "transfer_metric": {"classes": {"metric": "accuracy", "lower_is_better": False},
                                "reconstruction": {"metric": "mse", "lower_is_better": True}},
            "train_loss": 1.0, "val_loss": 1.0, "acc": None, "bwt": None, "total_wall_s": 1.0, "epochs": [],
            "evaluations": {"init": {}, "after_joint": final}, "config": c.to_dict()}


def _row(df, name):
    return df[df["experiment"] == name].iloc[0]


def test_delta_m_uses_the_reconstruction_mse_lower_is_better():
    runs = [fake_run("stl-c", ["classes"], acc=0.80, shared_layers=3),
            fake_run("stl-r", ["reconstruction"], mse=0.040, shared_layers=3),  # recon_score 0.6
            fake_run("mtl", ["classes", "reconstruction"], acc=0.84, mse=0.050, shared_layers=3)]  # score 0.5
    r = _row(table(runs), "mtl")
    assert r["gain_classes"] == pytest.approx(0.05)  # (0.84 − 0.80) / 0.80
    assert r["gain_reconstruction"] == pytest.approx(-0.25)  # −(0.050 − 0.040) / 0.040, not (0.5 − 0.6)/0.6
    assert r["delta_m"] == pytest.approx((0.05 - 0.25) / 2)


def test_a_run_is_compared_only_with_the_baseline_of_its_own_trunk():
    runs = [fake_run("stl-c-3", ["classes"], acc=0.80, shared_layers=3),
            fake_run("stl-r-3", ["reconstruction"], mse=0.040, shared_layers=3),
            fake_run("stl-c-3-static", ["classes"], acc=0.99, shared_layers=2, weighting="static"),  # not equal w.
            fake_run("mtl-2", ["classes", "reconstruction"], acc=0.84, mse=0.050, shared_layers=2),
            fake_run("mtl-3-drop", ["classes", "reconstruction"], acc=0.84, mse=0.050, shared_layers=3,
                     dropout=0.2, dropout_at="last"),
            fake_run("mtl-3-drop0", ["classes", "reconstruction"], acc=0.88, mse=0.030, shared_layers=3,
                     dropout=0.0, dropout_at="last")]  # p = 0: the same network as no dropout
    df = table(runs)
    for name in ("mtl-2", "mtl-3-drop"):  # only a different depth / dropout exists: no Δm, no gains
        r = _row(df, name)
        assert r["delta_m"] is None or r["delta_m"] != r["delta_m"], name
        assert all(r[f"gain_{t}"] is None or r[f"gain_{t}"] != r[f"gain_{t}"] for t in ("classes", "reconstruction"))
    r = _row(df, "mtl-3-drop0")
    assert r["delta_m"] == pytest.approx(((0.88 - 0.80) / 0.80 + (0.040 - 0.030) / 0.040) / 2)  # (0.1 + 0.25)/2
    line = next(s for s in markdown(df).splitlines() if s.startswith("| mtl-2 |"))
    assert line.rstrip(" |").split("|")[-2].strip() == "–"  # the Δm cell, before the seconds


def test_an_experiment_over_seeds_shows_its_mean_and_the_seed_spread_of_delta_m():
    runs = []
    for seed, acc in ((0, 0.88), (1, 0.82)):  # gains +0.1 and +0.025 against 0.80
        runs += [fake_run("stl-c", ["classes"], acc=0.80, seed=seed),
                 fake_run("stl-r", ["reconstruction"], mse=0.040, seed=seed),
                 fake_run("mtl", ["classes", "reconstruction"], acc=acc, mse=0.040, seed=seed)]  # recon gain 0
    df = table(runs)
    r = _row(df, "mtl")
    assert r["n_seeds"] == 2 and r["classes"] == pytest.approx(0.85)
    assert r["delta_m"] == pytest.approx((0.05 + 0.0125) / 2)  # Δm per seed: 0.05, 0.0125
    assert r["delta_m_sd"] == pytest.approx(0.0375 / 2 ** 0.5)  # sample std of {0.05, 0.0125}: 0.0265
    assert "| +3.1% ± 2.7 |" in next(s for s in markdown(df).splitlines() if s.startswith("| mtl |"))
    assert "±" not in next(s for s in markdown(table(runs[:3])).splitlines() if s.startswith("| mtl |"))


def test_trunk_key_ignores_what_does_not_change_the_network():
    base = MTLConfig().to_dict()
    assert trunk_key(base) == trunk_key(MTLConfig(weighting="static", epochs=9, lr=0.1, tasks="2").to_dict())
    assert trunk_key(base) == trunk_key(MTLConfig(dropout=0.0, dropout_at="last").to_dict())
    assert trunk_key(base) == trunk_key(base | {"experts": 7})  # experts only matter for MMoE
    for change in ({"shared_layers": 3}, {"shared_width": 32}, {"task_layers": (16,)}, {"dropout": 0.2},
                   {"architecture": "mtan"}, {"backbone": "vit_tiny"}):
        assert trunk_key(base) != trunk_key(MTLConfig(**change).to_dict()), change
    assert trunk_key(MTLConfig(architecture="mmoe").to_dict()) != trunk_key(
        MTLConfig(architecture="mmoe", architecture_args=MMoEConfig(num_experts=7)).to_dict())


def test_the_batch_derives_one_equal_joint_baseline_per_trunk_and_task():
    profile = {"kind": "mtl", "seeds": [0, 1], "config": {"epochs": 4, "shared_layers": 3, "lr": 0.002},
               "experiments": [
                   {"name": "a", "tasks": "classes,coarse", "weighting": "static", "static.weights": "1,0.5"},
                   {"name": "a-gn", "tasks": "classes,coarse", "weighting": "gradnorm"},  # same trunk as a
                   {"name": "b", "tasks": "classes,coarse", "shared_layers": 2, "dropout": 0.2,
                    "dropout_at": "last"},
                   {"name": "c", "tasks": "classes,coarse", "architecture": "mmoe", "schedule": "sequential",
                    "epochs": 1},
                   {"name": "stl-coarse-mine", "tasks": "coarse"}]}  # an explicit baseline of a's trunk
    runs = plan(profile, [])
    derived = [cfg for group, cfg in runs if cfg.run_name not in {e["name"] for e in profile["experiments"]}]
    names = sorted({c.run_name for c in derived})
    assert names == ["stl-classes-mmoe", "stl-classes-shared-bottom", "stl-classes-shared-bottom-2x64-drop0.2last",
                     "stl-coarse-mmoe", "stl-coarse-shared-bottom-2x64-drop0.2last"]
    assert len(derived) == 2 * len(names)  # one per seed
    assert runs[0][1].run_name in names  # baselines run (and are reported) first
    for c in derived:
        assert (c.weighting, c.schedule, c.epochs, c.lr) == ("equal", "joint", 4, 0.002)
    experiments = [c for _, c in runs if c.tasks == "classes,coarse"]
    baselines = {(trunk_key(c.to_dict()), c.tasks, c.seed) for _, c in runs if "," not in c.tasks}
    for c in experiments:
        for t in ("classes", "coarse"):
            assert (trunk_key(c.to_dict()), t, c.seed) in baselines, (c.run_name, t)


def test_a_summary_written_before_the_one_schema_reads_as_today_s():
    new = fake_run("mtl", ["classes", "reconstruction"], acc=0.84, mse=0.050)
    old = {k: v for k, v in new.items() if k not in ("metric_units", "final_metrics", "final", "acc", "bwt")} | {
        "primary": new["metric_units"], "final": new["final_metrics"], "cl": None,
        "final_primary": dict(zip(new["tasks"], new["final"], strict=True))}
    assert current_schema(old) == new | {"forgetting": None, "fwt": None}
    assert current_schema(old | {"cl": {"acc": 0.5, "bwt": -0.1, "forgetting": 0.1, "fwt": 0.0}})["bwt"] == -0.1
