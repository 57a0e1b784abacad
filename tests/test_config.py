import json
import re

import pytest

from benchmark.config import RunConfig, parse_config
from benchmark.errors import UserError
from benchmark.registry import BACKBONES, STRATEGIES


def test_defaults_and_typed_entry_configs():
    cfg, _ = parse_config([])
    assert cfg == RunConfig(stream_args=cfg.stream_args, backbone_args=cfg.backbone_args)
    assert cfg.stream_args.source == "fashion_mnist" and cfg.strategy_args is None
    cfg, _ = parse_config(["--strategy", "lwf"])
    assert (cfg.strategy_args.alpha, cfg.strategy_args.temperature) == (1.0, 2.0)  # the dense suite's λ = 1, T = 2


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


def test_a_config_file_may_spell_an_entry_name_with_dashes(tmp_path):
    f = tmp_path / "c.json"
    f.write_text(json.dumps({"binary-tasks.train-per-task": 11, "replay.mem-size": 5}))
    cfg, _ = parse_config(["--strategy", "replay", "--config", str(f)])
    assert cfg.stream_args.train_per_task == 11 and cfg.strategy_args.mem_size == 5


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


@pytest.mark.parametrize("values,key,fragment", [
    ({"backbone_mode": "frozn"}, "backbone_mode", "invalid choice: 'frozn'"),
    ({"lr_schedule": "cosin"}, "lr_schedule", "invalid choice: 'cosin'"),
    ({"optimizer": "sgd"}, "optimizer", "invalid choice: 'sgd'"),
    ({"device": "tpu"}, "device", "invalid choice: 'tpu'"),
    ({"download": "no"}, "download", "expected true or false"),
    ({"feature_cache": 0}, "feature_cache", "expected true or false"),
    ({"epochs": 1.9}, "epochs", "invalid int value: '1.9'"),
    ({"epochs": True}, "epochs", "got true"),
    ({"batch_size": None}, "batch_size", "got null"),
    ({"lr": [0.1, 0.2]}, "lr", "invalid float value: '0.1,0.2'"),
    ({"lr": {"value": 0.1}}, "lr", "got {"),
    ({"hidden": [16, "x"]}, "hidden", "comma-separated integers"),
    ({"strategy": "lwf", "lwf.alpha": float("nan")}, "lwf.alpha", "NaN"),
    ({"strategy": "lwf", "lwf.temperature": "warm"}, "lwf.temperature", "invalid float value"),
    ({"stream": "binary_tasks", "binary_tasks.train_per_task": 2.5}, "binary_tasks.train_per_task", "invalid int"),
])
def test_config_file_values_get_the_checks_flags_get(values, key, fragment, tmp_path):
    f = tmp_path / "c.json"
    f.write_text(json.dumps(values))
    with pytest.raises(UserError) as e:
        parse_config(["--config", str(f)])
    msg = str(e.value)
    assert str(f) in msg and repr(key) in msg and fragment in msg and "\n" not in msg


def test_config_file_accepts_what_a_flag_would(tmp_path):
    f = tmp_path / "c.json"
    f.write_text(json.dumps({"download": False, "epochs": 3, "lr": 1, "backbone_mode": "frozen", "tasks": 1,
                             "hidden": "32,8", "data_root": "d", "strategy": "lwf", "lwf.alpha": 2}))
    with pytest.raises(UserError, match="'tasks'"):  # not a run key: still an error, never ignored
        parse_config(["--config", str(f)])
    f.write_text(json.dumps({"download": False, "epochs": 3, "lr": 1, "backbone_mode": "frozen", "hidden": "32,8",
                             "strategy": "lwf", "lwf.alpha": 2}))
    cfg, _ = parse_config(["--config", str(f)])
    assert (cfg.download, cfg.epochs, cfg.lr, cfg.backbone_mode, cfg.hidden) == (False, 3, 1.0, "frozen", (32, 8))
    assert type(cfg.lr) is float and cfg.strategy_args.alpha == 2.0


def test_profile_values_get_the_same_checks(tmp_path, monkeypatch):
    import benchmark.config

    (tmp_path / "broken.json").write_text(json.dumps({"config": {"download": "no"}}))
    monkeypatch.setattr(benchmark.config, "PROFILE_DIR", tmp_path)
    with pytest.raises(UserError) as e:
        parse_config(["--profile", "broken"])
    assert "profile broken" in str(e.value) and "'download'" in str(e.value)


def _float_flags():
    """(argv prefix, flag) for every float field of the run config and of every entry's config class."""
    from dataclasses import fields

    from benchmark.registry import STREAMS

    out = [([], f"--{f.name.replace('_', '-')}") for f in fields(RunConfig) if f.type in (float, "float")]
    for kind, reg in (("stream", STREAMS), ("backbone", BACKBONES), ("strategy", STRATEGIES)):
        for name in reg.names():
            cls = reg.get(name).config_cls
            out += [([f"--{kind}", name], f"--{name}.{f.name.replace('_', '-')}") for f in fields(cls or ())
                    if f.type in (float, "float")] if cls else []
    return out


@pytest.mark.parametrize("prefix,flag", _float_flags(), ids=lambda x: x if isinstance(x, str) else None)
def test_every_float_flag_rejects_nan(prefix, flag):
    with pytest.raises(UserError, match=f"argument {re.escape(flag)}.*NaN is not a number"):
        parse_config([*prefix, flag, "nan"])


@pytest.mark.parametrize("prefix,flag", _float_flags(), ids=lambda x: x if isinstance(x, str) else None)
def test_every_float_flag_rejects_infinity(prefix, flag):
    """inf passes every `x >= 0` check and fails the run later, blamed on the loss; 1e999 parses as inf too."""
    for value in ("inf", "-inf", "1e999"):
        with pytest.raises(UserError, match=f"argument {re.escape(flag)}.*{value}.*a finite number is needed"):
            parse_config([*prefix, f"{flag}={value}"])


def test_an_infinite_config_file_value_names_the_file_and_key(tmp_path):
    f = tmp_path / "c.json"
    f.write_text(json.dumps({"strategy": "ewc", "ewc.ewc_lambda": float("inf")}))  # JSON's `Infinity`
    with pytest.raises(UserError, match=f"bad value for 'ewc.ewc_lambda' in {f}: .*a finite number is needed"):
        parse_config(["--config", str(f)])


@pytest.mark.parametrize("argv,fragment", [
    (["--lwf.alpha", "1"], "--lwf.alpha belongs to strategy lwf, not naive"),
    (["--strategy", "lwf", "--replay.mem-size=5"], "--replay.mem-size belongs to strategy replay, not lwf"),
    (["--dino_vits16.depth", "2"], "--dino_vits16.depth belongs to backbone dino_vits16, not vit_tiny"),
    (["--dense_suite.grid", "4"], "--dense_suite.grid belongs to stream dense_suite, not binary_tasks"),
])
def test_a_knob_of_another_entry_names_its_owner(argv, fragment):
    with pytest.raises(UserError) as e:
        parse_config(argv)
    assert fragment in str(e.value)


@pytest.mark.parametrize("values,fragment", [
    ({"download": "no"}, "expected true or false"),
    ({"epochs": 1.5}, "invalid int value"),
    ({"dropout_at": "nowhere"}, "invalid choice"),
    ({"weighting": "gradnorm", "gradnorm.alpha": "nan"}, "NaN"),
])
def test_mtl_config_files_get_the_same_checks(values, fragment, tmp_path):
    from benchmark.mtl.config import parse_mtl_config

    f = tmp_path / "m.json"
    f.write_text(json.dumps(values))
    with pytest.raises(UserError, match=fragment) as e:
        parse_mtl_config(["--config", str(f)])
    if "NaN" not in fragment:  # a parsing error names the file (a range check names the flag)
        assert str(f) in str(e.value)


def test_mtl_flags_parse_as_run_flags_do(tmp_path):
    """`hatswap mtl` goes through the same parser as `hatswap run`: a knob of an entry not chosen names its owner; a
    file key keeps its entry name as registered and takes its knob with `-` or `_`."""
    from benchmark.mtl.config import parse_mtl_config

    with pytest.raises(UserError, match="--static.weights belongs to weighting static, not equal"):
        parse_mtl_config(["--static.weights", "1,2"])
    f = tmp_path / "m.json"
    f.write_text(json.dumps({"architecture": "cross-stitch", "cross-stitch.alpha-same": 0.75, "shared-layers": 3}))
    cfg, _ = parse_mtl_config(["--config", str(f)])
    assert cfg.architecture_args.alpha_same == 0.75 and cfg.shared_layers == 3
    with pytest.raises(UserError, match="invalid value for --epochs: 0 \\(key 'epochs' of the profile\\)"):
        parse_mtl_config([], defaults={"epochs": 0})


def test_mtl_errors_name_where_a_bad_value_came_from(tmp_path):
    from benchmark.mtl.config import parse_mtl_config

    f = tmp_path / "m.json"
    f.write_text(json.dumps({"epoch": 2}))
    with pytest.raises(UserError, match=f"unknown config keys: \\['epoch'\\] \\(in {f}\\)"):
        parse_mtl_config(["--config", str(f)])
    with pytest.raises(UserError, match="bad value for 'epochs' in experiment 'exp9'"):
        parse_mtl_config([], defaults={"epochs": "x"}, origin="experiment 'exp9'")


def test_a_range_check_on_a_file_value_names_the_file_and_key(tmp_path):
    f = tmp_path / "c.json"
    f.write_text(json.dumps({"epochs": 0, "vit_tiny.num_heads": 3}))
    with pytest.raises(UserError) as e:
        parse_config(["--config", str(f), "--vit_tiny.num-heads", "4"])
    assert str(e.value).endswith(f"(key 'epochs' of {f})")
    with pytest.raises(UserError) as e:
        parse_config(["--config", str(f), "--epochs", "1"])
    assert "--vit_tiny.num-heads" in str(e.value) and f"'vit_tiny.num_heads' of {f}" in str(e.value)


@pytest.fixture
def profiles(tmp_path, monkeypatch):
    """A profile folder of our own: name → its path, once written."""
    import benchmark.config

    monkeypatch.setattr(benchmark.config, "PROFILE_DIR", tmp_path)

    def write(name: str, text: str):
        (tmp_path / f"{name}.json").write_text(text)
        return tmp_path / f"{name}.json"

    return write


def test_malformed_json_names_the_file_line_and_column(profiles, tmp_path):
    broken = '{"config": {"epochs": 1,\n  "lr": }}'
    path = profiles("broken", broken)
    with pytest.raises(UserError) as e:
        parse_config(["--profile", "broken"])
    assert str(e.value) == f"profile broken ({path}) is not valid JSON: Expecting value at line 2, column 9"
    config = tmp_path / "c.json"
    config.write_text(broken)
    with pytest.raises(UserError) as e:
        parse_config(["--config", str(config)])
    assert str(e.value) == f"config file {config} is not valid JSON: Expecting value at line 2, column 9"
    profiles("list", "[1, 2]")
    with pytest.raises(UserError, match="profile list .* must hold a JSON object"):
        parse_config(["--profile", "list"])


def test_an_unknown_entry_set_by_a_profile_names_the_profile_not_the_flag(profiles):
    path = profiles("odd", json.dumps({"config": {"strategy": "ewcc", "backbone": "vit_tiny"}}))
    with pytest.raises(UserError) as e:
        parse_config(["--profile", "odd"])
    assert str(e.value).startswith("unknown strategy 'ewcc'; known: ")
    assert str(e.value).endswith(f"(key 'strategy' of profile odd ({path}))")
    assert parse_config(["--profile", "odd", "--strategy", "ewc"])[0].strategy == "ewc"  # the flag overrides it
    with pytest.raises(UserError) as e:
        parse_config(["--profile", "odd", "--strategy=nope"])  # now the flag's value is the unknown one
    assert "'nope'" in str(e.value) and "profile odd" not in str(e.value)


def test_a_profiles_strategy_config_applies_to_that_strategys_runs_only(profiles):
    profiles("mixed", json.dumps({"config": {"epochs": 2, "backbone_mode": "frozen"},
                                  "strategy_config": {"lwf": {"backbone_mode": "finetune", "lwf.alpha": 3}}}))
    lwf, _ = parse_config(["--profile", "mixed", "--strategy", "lwf"])
    naive, _ = parse_config(["--profile", "mixed", "--strategy", "naive"])
    assert (lwf.backbone_mode, lwf.strategy_args.alpha, lwf.epochs) == ("finetune", 3.0, 2)
    assert (naive.backbone_mode, naive.epochs) == ("frozen", 2)
    flag, _ = parse_config(["--profile", "mixed", "--strategy", "lwf", "--backbone-mode", "frozen"])
    assert flag.backbone_mode == "frozen"  # flags still beat the profile
    profiles("typo", json.dumps({"strategy_config": {"lwf": {"epochz": 1}}}))
    with pytest.raises(UserError, match="strategy_config"):
        parse_config(["--profile", "typo", "--strategy", "lwf"])
