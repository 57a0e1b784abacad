import json

import pytest

from benchmark.config import RunConfig, parse_config
from benchmark.errors import UserError
from benchmark.registry import BACKBONES, STRATEGIES


def test_defaults_and_typed_entry_configs():
    cfg, _ = parse_config([])
    assert cfg == RunConfig(stream_args=cfg.stream_args, backbone_args=cfg.backbone_args)
    assert cfg.stream_args.source == "fashion_mnist" and cfg.strategy_args is None
    cfg, _ = parse_config(["--strategy", "lwf"])
    assert (cfg.strategy_args.alpha, cfg.strategy_args.temperature) == (1.0, 2.0)  # seed 004's λ = 1, T = 2


def test_precedence_defaults_profile_file_flags(tmp_path):
    f = tmp_path / "c.json"
    f.write_text(json.dumps({"epochs": 7, "lr": 0.5, "hidden": [32, 8], "lwf.temperature": 3}))
    cfg, _ = parse_config(["--profile", "smoke", "--config", str(f), "--strategy", "lwf", "--lr", "0.25"])
    assert cfg.batch_size == 16  # profile
    assert cfg.epochs == 7 and cfg.hidden == (32, 8) and cfg.strategy_args.temperature == 3.0  # file
    assert cfg.lr == 0.25  # flag beats file


def test_namespaced_flags_dash_or_underscore():
    cfg, _ = parse_config(["--strategy", "replay", "--replay.mem-size", "77", "--binary_tasks.train_per_task", "9",
                           "--no-download", "--hidden", "64,32"])
    assert cfg.strategy_args.mem_size == 77 and cfg.stream_args.train_per_task == 9
    assert cfg.download is False and cfg.hidden == (64, 32)


@pytest.mark.parametrize("argv,fragment", [
    (["--epochs", "abc"], "invalid int value"),
    (["--epochs", "0"], "--epochs"),
    (["--lr", "-1"], "--lr"),
    (["--dropout", "1.5"], "--dropout"),
    (["--hidden", "12,x"], "comma-separated integers"),
    (["--device", "tpu"], "invalid choice"),
    (["--epocs", "3"], "unrecognized arguments"),
    (["--strategy", "lwf", "--lwf.temperature", "0"], "--lwf.temperature"),
    (["--strategy", "nope"], f"known: {', '.join(STRATEGIES.names())}"),
    (["--stream", "nope"], "known: binary_tasks"),
    (["--backbone", "nope"], f"known: {', '.join(BACKBONES.names())}"),
    (["--binary_tasks.source", "nope"], None),  # checked when the stream loads; see test_cli
    (["--profile", "nope"], "known: default"),
    (["--seed", "-1"], "--seed"),
])
def test_malformed_values_are_one_line_user_errors(argv, fragment):
    if fragment is None:
        parse_config(argv)
        return
    with pytest.raises(UserError) as e:
        parse_config(argv)
    assert fragment in str(e.value) and "\n" not in str(e.value)


def test_unknown_key_in_config_file(tmp_path):
    f = tmp_path / "c.json"
    f.write_text(json.dumps({"epoch": 3}))
    with pytest.raises(UserError, match="unknown config keys: \\['epoch'\\]"):
        parse_config(["--config", str(f)])


def test_to_dict_roundtrips_through_a_config_file(tmp_path):
    cfg, _ = parse_config(["--strategy", "lwf", "--lwf.alpha", "0.5", "--hidden", "8,4"])
    f = tmp_path / "c.json"
    f.write_text(json.dumps(cfg.to_dict()))
    again, _ = parse_config(["--config", str(f)])
    assert again == cfg


def test_profile_knobs_of_other_strategies_are_allowed_but_typos_are_not(tmp_path):
    cfg, _ = parse_config(["--profile", "smoke", "--strategy", "lwf"])  # smoke sets replay.mem_size
    assert cfg.strategy_args.alpha == 1.0
    f = tmp_path / "c.json"
    f.write_text(json.dumps({"replay.mem_sise": 3}))
    with pytest.raises(UserError, match="replay.mem_sise"):
        parse_config(["--config", str(f)])
