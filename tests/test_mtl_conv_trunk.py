"""The multi-task experiments' own network: a conv trunk whose depth (`--small_cnn.channels`) and dropout
(`--small_cnn.dropout`, `--small_cnn.dropout-at`) are options, shared-bottom with no shared Linear layer
(`--shared-layers 0`), and the `mtl-conv` profile that runs the document's five experiments on it."""

import json

import pytest
import torch
from torch import nn

from benchmark.cli import main
from benchmark.config import load_profile
from benchmark.errors import UserError
from benchmark.models.small_cnn import SmallCnnConfig
from benchmark.mtl.batch import plan
from benchmark.mtl.config import parse_mtl_config
from benchmark.mtl.model import MultiTaskModel
from benchmark.mtl.report import table
from benchmark.mtl.transfer import trunk_key
from benchmark.outputs.results import existing_status
from benchmark.registry import BACKBONES

TINY = ["--mtl_tasks.train-size", "60", "--mtl_tasks.val-size", "20", "--mtl_tasks.test-size", "40",
        "--small_cnn.channels", "4", "--shared-width", "8", "--task-layers", "8", "--epochs", "2",
        "--batch-size", "16", "--no-download", "--no-apt-install", "--device", "cpu"]
BLOCK = [nn.Conv2d, nn.GroupNorm, nn.ReLU, nn.MaxPool2d]


def _cnn(channels=(4, 8, 8), **kw):
    entry = BACKBONES.get("small_cnn")
    return entry.build(SmallCnnConfig(channels=channels, **kw), image_size=28, in_chans=1).module


def _types(module) -> list[type]:
    return [type(m) for m in module.blocks]


@pytest.mark.parametrize("at,expected", [
    ("each", BLOCK + [nn.Dropout] + BLOCK + [nn.Dropout] + BLOCK + [nn.Dropout]),
    ("last", BLOCK * 3 + [nn.Dropout]),
    ("none", BLOCK * 3)])
def test_dropout_sits_after_each_conv_block_after_the_last_or_nowhere(at, expected):
    cnn = _cnn(dropout=0.2, dropout_at=at)
    assert _types(cnn) == expected
    assert all(m.p == 0.2 for m in cnn.blocks if isinstance(m, nn.Dropout))


def test_no_dropout_builds_the_default_network_module_for_module_with_the_same_initial_weights():
    torch.manual_seed(3)
    default = _cnn()
    for at in ("each", "last", "none"):
        torch.manual_seed(3)
        other = _cnn(dropout=0.0, dropout_at=at)
        assert _types(other) == BLOCK * 3
        assert list(other.state_dict()) == list(default.state_dict())
        assert all(torch.equal(a, b) for a, b in zip(other.state_dict().values(), default.state_dict().values(),
                                                      strict=True))


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_depth_is_the_number_of_conv_blocks_each_halving_the_map(depth):
    cnn = _cnn(channels=(4,) * depth, dropout=0.2)
    assert sum(isinstance(m, nn.Conv2d) for m in cnn.modules()) == depth
    assert cnn.forward_features(torch.zeros(2, 1, 28, 28)).shape == (2, 4, 28 >> depth, 28 >> depth)


def test_dropout_changes_the_output_in_train_mode_and_not_in_eval():
    torch.manual_seed(0)
    cnn, x = _cnn(dropout=0.5, dropout_at="each"), torch.randn(4, 1, 28, 28)

    def without_dropout(x):
        for m in cnn.blocks:
            x = x if isinstance(m, nn.Dropout) else m(x)
        return x

    cnn.eval()
    assert torch.equal(cnn.forward_features(x), without_dropout(x))
    assert torch.equal(cnn.forward_features(x), cnn.forward_features(x))
    cnn.train()
    assert not torch.allclose(cnn.forward_features(x), without_dropout(x))


def _conv_model(channels=(4, 8), **kw):
    return MultiTaskModel(["a", "b"], shared_layers=0, task_layers=(), backbone="small_cnn",
                          backbone_args={"channels": channels, **kw}, input_shape=(1, 28, 28), pooling="flatten")


@pytest.mark.parametrize("channels", [(4, 8), (4, 8, 8)])
def test_no_shared_layer_gives_heads_reading_the_flattened_conv_map(channels):
    torch.manual_seed(0)
    model, x = _conv_model(channels).eval(), torch.randn(3, 1, 28, 28)
    side = 28 >> len(channels)
    flat = model.arch.backbone.body.forward_features(x).flatten(2).transpose(1, 2).flatten(1)  # B × (h·w·C)
    assert model.arch.out_dim == channels[-1] * side * side
    assert not [m for m in model.arch.modules() if isinstance(m, nn.Linear)]  # the conv stack is all that is shared
    out = model(x)
    for t in ("a", "b"):
        head = model.heads[t][-1]
        assert head.in_features == model.arch.out_dim
        assert torch.allclose(out[t], head(flat), atol=1e-6)
    # GradNorm's and the gradient monitor's "last shared layer" is then the last conv
    last_conv = [m for m in model.arch.modules() if isinstance(m, nn.Conv2d)][-1]
    assert [id(p) for p in model.arch.last_shared_parameters()] == [id(p) for p in last_conv.parameters()]


def test_bad_conv_trunk_values_are_one_clear_error(tmp_path, fmnist_root, capsys):
    with pytest.raises(UserError, match=r"--small_cnn.dropout must be in \[0, 1\)"):
        SmallCnnConfig(dropout=1.0)
    with pytest.raises(UserError, match="--small_cnn.dropout-at one of"):
        SmallCnnConfig(dropout=0.2, dropout_at="every")
    with pytest.raises(UserError, match="shared_layers=0 .* is for \\['shared-bottom'\\]; architecture 'mmoe'"):
        MultiTaskModel(["a", "b"], architecture="mmoe", shared_layers=0, backbone="small_cnn",
                       input_shape=(1, 28, 28))
    with pytest.raises(UserError, match="shared_layers=0 sizes the task heads by the input width"):
        MultiTaskModel(["a", "b"], shared_layers=[])
    with pytest.raises(UserError, match="invalid value for --shared-layers: -1"):
        parse_mtl_config(["--shared-layers", "-1"])
    base = ["mtl", "--data-root", str(fmnist_root), "--out-dir", str(tmp_path), *TINY]
    capsys.readouterr()
    assert main([*base, "--shared-layers", "0", "--architecture", "cross-stitch"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "architecture 'cross-stitch' needs at least one shared layer" in err[0]
    assert main([*base, "--small_cnn.dropout", "1.5"]) == 2
    assert "--small_cnn.dropout must be in [0, 1)" in capsys.readouterr().err


def test_config_json_records_the_conv_dropout_and_earlier_runs_still_match(tmp_path, fmnist_root):
    args = ["--data-root", str(fmnist_root), "--out-dir", str(tmp_path), *TINY, "--epochs", "1"]
    cfg, _ = parse_mtl_config(args)
    assert main(["mtl", *args]) == 0
    (folder,) = (tmp_path / "mtl" / "runs").glob("*/seed0")
    record = json.loads((folder / "config.json").read_text())
    assert (record["config"]["small_cnn.dropout"], record["config"]["small_cnn.dropout_at"]) == (0.0, "each")
    old = {k: v for k, v in record["config"].items() if not k.startswith("small_cnn.dropout")}
    (folder / "config.json").write_text(json.dumps(record | {"config": old}))  # as written before the option
    assert existing_status(folder, cfg.to_dict()) == ("same", "")
    assert trunk_key(old) == trunk_key(cfg.to_dict())  # its single-task baselines still serve
    other, _ = parse_mtl_config([*args, "--small_cnn.dropout", "0.2"])
    status, detail = existing_status(folder, other.to_dict())
    assert status == "different" and "small_cnn.dropout: 0.0 → 0.2" in detail
    assert trunk_key(other.to_dict()) != trunk_key(cfg.to_dict())
    # no dropout is no dropout, wherever it would sit: the same trunk, so the same baselines
    at_none, _ = parse_mtl_config([*args, "--small_cnn.dropout", "0.2", "--small_cnn.dropout-at", "none"])
    assert trunk_key(at_none.to_dict()) == trunk_key(cfg.to_dict())


def test_the_mtl_conv_profile_runs_the_documents_five_experiments_on_the_conv_trunk():
    profile = load_profile("mtl-conv")
    planned = plan(profile, [])
    by_name = {}
    for _, cfg in planned:
        by_name.setdefault(cfg.run_name, []).append(cfg)
    assert len(profile["seeds"]) >= 3 and all(len(v) == len(profile["seeds"]) for v in by_name.values())
    assert not [n for n in by_name if n.startswith("stl-")]  # "baselines": false
    one = {n: v[0] for n, v in by_name.items()}
    assert all(c.shared_layers == 0 and c.architecture == "shared-bottom" and c.dropout == 0 for c in one.values())
    conv = {n: (len(c.backbone_args.channels), c.backbone_args.dropout,
                c.backbone_args.dropout_at if c.backbone_args.dropout else "none", c.weighting_args.weights,
                c.tasks) for n, c in one.items()}
    assert conv["exp1"] == (3, 0.0, "none", "1,0.5,1", "3")
    assert conv["exp2"] == (3, 0.2, "last", "1,0.5,1", "3")
    assert conv["exp3"] == (3, 0.2, "each", "0.5,0.1,1", "3")
    assert conv["exp4"] == (2, 0.2, "last", "0.5,0.1,1", "3")
    assert conv["exp5"] == (3, 0.2, "each", "0.5,0.1,1,0.1", "4")
    # the controls: exp1's network with exp3's weights, exp3's network with exp1's weights
    assert conv["exp1-weights3"] == conv["exp1"][:3] + conv["exp3"][3:]
    assert conv["exp3-weights1"] == conv["exp3"][:3] + conv["exp1"][3:]
    with pytest.raises(UserError, match="\"baselines\" is true .* or false, got 'no'"):
        plan(profile | {"baselines": "no"}, [])


def test_the_report_names_the_conv_dropout_and_each_tasks_val_loss():
    def run(name, dropout, at):
        config = {"backbone": "small_cnn", "small_cnn.dropout": dropout, "small_cnn.dropout_at": at,
                  "dropout": 0.0, "dropout_at": "each", "shared_layers": 0, "task_set": "mtl_tasks"}
        return {"name": name, "seed": 0, "tasks": ["classes", "coarse"], "weighting": "equal", "schedule": "joint",
                "architecture": "shared-bottom", "config": config, "final": [0.8, 0.9], "metric_units": {},
                "final_metrics": {}, "train_loss": 0.1, "val_loss": 0.5, "acc": 0.85, "bwt": None,
                "total_wall_s": 1.0, "evaluations": {"init": {}, "after_joint": {}},
                "epochs": [{"val_loss": {"classes": 0.7, "coarse": 0.3}}]}

    df = table([run("a", 0.2, "each"), run("b", 0.2, "last"), run("c", 0.0, "each")])
    rows = {r["experiment"]: r for _, r in df.iterrows()}
    assert [rows[n]["dropout"] for n in "abc"] == ["small_cnn 0.2 each", "small_cnn 0.2 single", "none"]
    assert (rows["a"]["val_loss_classes"], rows["a"]["val_loss_coarse"]) == (0.7, 0.3)


def test_the_paired_script_differences_two_experiments_seed_by_seed(tmp_path, fmnist_root):
    from scripts.mtl_paired import compare

    for name, dropout in (("exp1", "0.0"), ("exp3", "0.5")):
        for seed in ("0", "1"):
            assert main(["mtl", "--data-root", str(fmnist_root), "--out-dir", str(tmp_path), *TINY, "--epochs", "1",
                         "--name", name, "--seed", seed, "--small_cnn.dropout", dropout]) == 0
    summary = {(n, s): json.loads((tmp_path / "mtl" / "runs" / n / f"seed{s}" / "summary.json").read_text())
               for n in ("exp1", "exp3") for s in (0, 1)}
    d = [summary["exp3", s]["epochs"][-1]["val_loss"]["coarse"] - summary["exp1", s]["epochs"][-1]["val_loss"]["coarse"]
         for s in (0, 1)]
    text = compare(tmp_path, [("exp3", "exp1")], ["val_loss:coarse"])
    row = next(line for line in text.splitlines() if line.startswith("| exp3 | exp1 |"))
    assert f"{(d[0] + d[1]) / 2:+.4f} [" in row and "| 2 | paired t |" in row
