"""What the multi-task code must know about an entry is declared in its registration or its config, never read from
its name: a new weighting with fixed weights, a new continual schedule, a new architecture's toolkit keyword."""

from dataclasses import dataclass, field

import pytest
from torch import nn

from benchmark.errors import UserError
from benchmark.mtl import ARCHITECTURES, SCHEDULES, WEIGHTINGS, MultiTaskModel
from benchmark.mtl.architectures.base import Architecture
from benchmark.mtl.config import parse_mtl_config
from benchmark.mtl.keywords import resolve, to_knobs
from benchmark.mtl.report import table
from benchmark.mtl.schedules.stage import Stage
from benchmark.mtl.weightings.base import Weighting
from tests.test_mtl_transfer import fake_run
from tests.test_readme_recipes import isolate


@dataclass(frozen=True)
class SharesConfig:
    shares: str = ""


def test_a_weighting_that_declares_fixed_weights_shows_them_in_the_report(monkeypatch):
    isolate(monkeypatch, WEIGHTINGS)
    WEIGHTINGS.register("shares", config_cls=SharesConfig, fixed_weights="shares")(lambda cfg, tasks: Weighting())
    WEIGHTINGS.register("computed", config_cls=SharesConfig)(lambda cfg, tasks: Weighting())
    runs = []
    for weighting in ("shares", "computed"):
        run = fake_run(weighting, ["classes"], acc=0.5, weighting=weighting)
        run["config"][f"{weighting}.shares"] = "classes=0.5"  # as a completed run holds them: one per task
        runs.append(run)
    df = table(runs).set_index("experiment")
    assert df.loc["shares", "weights"] == "classes=0.5" and df.loc["computed", "weights"] == ""


def test_a_schedule_that_declares_itself_continual_gets_a_continual_acc(monkeypatch):
    isolate(monkeypatch, SCHEDULES)
    for name, continual in (("one-by-one", True), ("all-at-once", False)):
        SCHEDULES.register(name, continual=continual)(lambda cfg, *, epochs, tasks: [Stage(epochs, tuple(tasks))])
    rows = {}
    for name in ("one-by-one", "all-at-once"):
        run = fake_run(name, ["classes"], acc=0.5, schedule=name) | {"acc": 0.5}
        run["evaluations"] = {"init": {}, "after_exp0": run["final_metrics"]}  # one evaluation per task
        rows[name] = table([run]).set_index("experiment").loc[name, "acc_cl"]
    assert rows["one-by-one"] == 0.5 and rows["all-at-once"] != rows["all-at-once"]  # NaN: no continual ACC


@dataclass(frozen=True)
class WideConfig:
    width: int = field(default=3, metadata={"keyword": "wide_width"})


class Wide(Architecture):
    def __init__(self, cfg, spec, make_backbone):
        super().__init__()
        self.tasks, self.backbone = spec.tasks, make_backbone()
        self.trunk = nn.LazyLinear(cfg.width)
        self.out_dim = cfg.width

    def forward(self, x):
        return dict.fromkeys(self.tasks, self.trunk(self.backbone.pooled(self.backbone(x))))


def test_an_architecture_brings_its_own_keywords_and_aliases(monkeypatch):
    isolate(monkeypatch, ARCHITECTURES)
    ARCHITECTURES.register("wide", config_cls=WideConfig, aliases=("broad",))(Wide)
    model = MultiTaskModel(["a"], architecture="broad", wide_width=5, in_features=2)
    assert model.architecture_name == "wide" and model.arch.out_dim == 5
    with pytest.raises(UserError, match="wide_width belongs to 'wide', not 'shared-bottom'"):
        MultiTaskModel(["a"], wide_width=5, in_features=2)
    with pytest.raises(UserError, match=r"unknown MultiTaskModel keyword\(s\) \['wide_widht'\].*wide_width"):
        MultiTaskModel(["a"], architecture="wide", wide_widht=5, in_features=2)


def test_the_registered_aliases_are_the_documents_spellings():
    assert resolve(ARCHITECTURES, "cross_stitch").name == "cross-stitch"
    assert resolve(ARCHITECTURES, "shared_bottom").name == "shared-bottom"
    assert resolve(WEIGHTINGS, "grad-norm").name == "gradnorm"
    with pytest.raises(UserError, match="unknown architecture 'cross-stich'"):
        resolve(ARCHITECTURES, "cross-stich")


@pytest.mark.parametrize("argv,defaults,experts", [
    (["--architecture", "mmoe", "--experts", "2"], {}, 2),
    (["--architecture", "mmoe", "--mmoe.num-experts", "3"], {}, 3),
    (["--architecture", "mmoe"], {"experts": 6}, 6),  # a profile's key
    (["--architecture", "mmoe", "--experts", "2"], {"experts": 6}, 2),  # the flag beats the profile
    (["--architecture", "mmoe"], {}, 4),
])
def test_the_documents_experts_key_is_mmoes_num_experts(argv, defaults, experts):
    cfg, _ = parse_mtl_config(argv, defaults=defaults)
    assert cfg.architecture_args.num_experts == experts
    assert cfg.to_dict()["experts"] == experts and "mmoe.num_experts" not in cfg.to_dict()  # config.json's key


def test_experts_is_taken_and_unused_by_other_architectures_and_a_conflict_is_an_error():
    cfg, _ = parse_mtl_config(["--architecture", "shared-bottom", "--experts", "2"])
    assert cfg.architecture_args is None and cfg.to_dict()["experts"] == 4
    with pytest.raises(UserError, match="set the same knob"):
        to_knobs({"experts": 2, "mmoe.num_experts": 3})


def test_a_derived_baseline_is_named_by_the_run_level_key_it_differs_in():
    from benchmark.mtl.batch import plan

    profile = {"kind": "mtl", "config": {"experts": 4, "tasks": "2"},
               "experiments": [{"name": "m8", "architecture": "mmoe", "experts": 8},
                               {"name": "m4", "architecture": "mmoe"}]}
    configs = [c for _, c in plan(profile, [])]
    baselines = {c.run_name: c.architecture_args.num_experts for c in configs if c.run_name.startswith("stl-")}
    assert baselines == {"stl-classes-mmoe-8experts": 8, "stl-coarse-mmoe-8experts": 8, "stl-classes-mmoe": 4,
                         "stl-coarse-mmoe": 4}
