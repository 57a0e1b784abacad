"""`hatswap pretrain`'s configuration: defaults < a profile's "pretrain" section < --config file < flags.

The defaults are DINO's ViT recipe (Caron et al. 2021, their main_dino.py) scaled to a 28/32 px ViT on a CPU: lr
5e-4 per 256 images with a linear warm-up then cosine decay, AdamW with weight decay 0.04 → 0.4 (cosine), teacher
momentum 0.996 → 1, τ_s = 0.1, τ_t warmed from 0.04 to 0.04 (no warm-up unless asked), centre momentum 0.9,
gradient clipping at 3, the prototypes frozen for the first epoch. The backbone's own knobs are namespaced as in
`hatswap run` (`--vit_tiny.embed-dim 64`), so the weights match the run that loads them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from benchmark.config import (
    PROFILE_DIR,
    CommandParser,
    RuntimeConfig,
    load_profile,
    parse_with_entries,
    read_config_file,
)
from benchmark.errors import UserError
from benchmark.registry import BACKBONES

PRETRAINABLE = ("vit_tiny",)  # backbones built from scratch here, whose weights a run can load
# Fields that say where things are or how fast they go, not what is learnt: outside the cache key.
PLUMBING = ("device", "threads", "data_root", "download", "apt_install", "out_dir", "eval_batch_size")
# How the weights are scored, not what they are: also outside the key (a new evaluation reuses the weights).
EVALUATION = ("evaluate", "eval_train_images", "eval_test_images", "eval_quick_images", "eval_supervised", "knn_k",
              "knn_temperature", "eval_split", "eval_val_images")
# Evaluation fields added after manifests were scored: at these values they are left out of the settings, so an
# evaluation stored before they existed (the test split, which used exactly these) still matches.
EVAL_ADDED_LATER = {"eval_split": "test"}
# Recipe fields added after weights were keyed: at these values they are left out of the recipe, so the weights
# trained before they existed (which used exactly these values) keep their key.
ADDED_LATER = {"head_bn": False, "precision": "fp32", "weights_dtype": "float32", "koleo_weight": 0.0}


@dataclass(frozen=True)
class PretrainConfig(RuntimeConfig):
    source: str = "fashion_mnist"  # any registered image source; only its train images are read (no labels)
    backbone: str = field(default="vit_tiny", metadata={"choices": PRETRAINABLE})
    train_images: int = 0  # seeded subsample of the source's train split; 0 = all
    image_size: int = 0  # 0 = the source's native size (as binary_tasks' image_size)
    epochs: int = 10
    batch_size: int = 128
    lr: float = 5e-4  # per 256 images: the step size is lr·batch_size/256 (DINO's linear scaling rule)
    min_lr: float = 1e-6
    warmup_epochs: int = 1
    weight_decay: float = 0.04
    weight_decay_end: float = 0.4
    momentum_teacher: float = 0.996
    out_dim: int = 4096  # K prototypes
    head_hidden: int = 512
    head_bottleneck: int = 128
    head_bn: bool = False  # batch norm in the projection head (DINO's use_bn_in_head; see benchmark/pretrain/head.py)
    student_temp: float = 0.1
    teacher_temp: float = 0.04
    warmup_teacher_temp: float = 0.04
    warmup_teacher_temp_epochs: int = 0
    center_momentum: float = 0.9
    local_crops: int = 6
    local_size: int = 0  # 0 = 3/7 of the image (DINO's 96/224), rounded to the patch size
    global_scale_min: float = 0.4
    local_scale_min: float = 0.05  # local crops: area scale in [local_scale_min, global_scale_min]
    clip_grad: float = 3.0  # 0 = no clipping
    freeze_last_layer: int = 1  # epochs during which the prototypes do not learn
    # DINOv2's KoLeo regulariser (Oquab et al. 2023; Sablayrolles et al. 2019) on the student's class tokens of each
    # global view, added to the DINO loss with this weight (DINOv2: 0.1); 0 = DINO's objective alone.
    koleo_weight: float = 0.0
    # bf16: the forward passes under bf16 autocast (DINO trains in mixed precision too: fp16 with a loss scaler;
    # bf16 needs none). The weights, optimizer, loss, centre and EMA stay fp32. Fast on GPUs from Ampere on (older
    # ones are refused) and on CPUs with AMX or AVX512-BF16 (other CPUs emulate it: slower). It changes the
    # numbers, so it is part of the recipe.
    precision: str = field(default="fp32", metadata={"choices": ("fp32", "bf16")})
    # How the weights file stores the tensors. float16 halves the file (a 128-wide ViT's 2.1 MB → 1.1 MB, under the
    # repository's 2 MiB limit for a committed file); a run loads them into its fp32 model, so what it uses (and
    # what the evaluation scores) is the stored, rounded values. Part of the recipe: the file's numbers change.
    weights_dtype: str = field(default="float32", metadata={"choices": ("float32", "float16")})
    evaluate: bool = True  # k-NN and linear probe on the source's labelled splits after training
    eval_train_images: int = 0  # labelled train images the k-NN and probe learn from; 0 = all (the headline)
    eval_test_images: int = 0  # test images scored; 0 = all
    eval_quick_images: int = 10000  # a quick check beside the headline: the probes on a seeded subsample; 0 = none
    eval_supervised: bool = False  # an upper bound: the same ViT trained on the labels with the same budget
    knn_k: int = 20
    knn_temperature: float = 0.07
    # Which split the probes are scored on. test: the source's test split (the headline, stored under the manifest's
    # "evaluation"). val: a seeded hold-out of `eval_val_images` labelled train images, the probes learning from the
    # rest (stored under "validation"): what a recipe is chosen on, so the test split is never read to choose one.
    eval_split: str = field(default="test", metadata={"choices": ("test", "val")})
    eval_val_images: int = 5000
    backbone_args: object = None  # instance of BACKBONES.get(backbone).config_cls

    def __post_init__(self):
        super().__post_init__()
        self.check({
            "train_images": self.train_images >= 0, "image_size": self.image_size >= 0,
            "min_lr": 0 <= self.min_lr, "warmup_epochs": self.warmup_epochs >= 0,
            "weight_decay_end": self.weight_decay_end >= 0, "momentum_teacher": 0 <= self.momentum_teacher <= 1,
            "out_dim": self.out_dim >= 1, "head_hidden": self.head_hidden >= 1,
            "head_bottleneck": self.head_bottleneck >= 1, "student_temp": self.student_temp > 0,
            "teacher_temp": self.teacher_temp > 0, "warmup_teacher_temp": self.warmup_teacher_temp > 0,
            "warmup_teacher_temp_epochs": 0 <= self.warmup_teacher_temp_epochs <= self.epochs,
            "center_momentum": 0 <= self.center_momentum <= 1, "local_crops": self.local_crops >= 0,
            "local_size": self.local_size >= 0, "global_scale_min": 0 < self.global_scale_min <= 1,
            "local_scale_min": 0 < self.local_scale_min <= self.global_scale_min, "clip_grad": self.clip_grad >= 0,
            "freeze_last_layer": self.freeze_last_layer >= 0, "koleo_weight": self.koleo_weight >= 0,
            "eval_train_images": self.eval_train_images >= 0,
            "eval_test_images": self.eval_test_images >= 0, "eval_quick_images": self.eval_quick_images >= 0,
            "knn_k": self.knn_k >= 1, "eval_val_images": self.eval_val_images >= 1,
            "knn_temperature": self.knn_temperature > 0,
        })
        if self.koleo_weight and self.batch_size < 2:
            raise UserError(f"--koleo-weight {self.koleo_weight} needs --batch-size 2 or more (each image's nearest "
                            f"neighbour is another image of its batch); raise --batch-size or drop --koleo-weight")

    def recipe(self) -> dict:
        """What the weights depend on (with the data, the cache key): every field but the plumbing and the
        evaluation's, the backbone's knobs namespaced as in a config file (`vit_tiny.embed_dim`)."""
        return {k: v for k, v in self.to_dict().items()
                if k not in PLUMBING + EVALUATION and not (k in ADDED_LATER and v == ADDED_LATER[k])}

    def evaluation(self) -> dict:
        """The evaluation's settings; on the test split, without the validation split's own (irrelevant there)."""
        out = {k: getattr(self, k) for k in EVALUATION}
        if self.eval_split == EVAL_ADDED_LATER["eval_split"]:
            del out["eval_split"], out["eval_val_images"]
        return out

    def evaluation_key(self) -> str:
        """Where a manifest stores this evaluation: "evaluation" (the test split, the headline) or "validation"."""
        return "evaluation" if self.eval_split == "test" else "validation"


def parse_pretrain_config(argv=None):
    """argv → (PretrainConfig, namespace); `--profile NAME` takes the profile's "pretrain" section."""
    parser = CommandParser(prog="hatswap pretrain", description="DINO self-supervised pretraining of a ViT backbone "
                           "on a source's train images; writes safetensors weights + a manifest (a cache: the same "
                           "recipe and data is reused, an interrupted run resumes).")
    parser.add_argument("--profile", help="a profile from benchmark/profiles/ whose \"pretrain\" section supplies "
                        "the defaults")
    parser.add_argument("--config", type=Path, help="JSON file of flag names to values (overrides the profile)")
    parser.add_argument("--force", action="store_true", help="train again even when the weights exist")
    parser.add_argument("--reevaluate", action="store_true", help="score existing weights (committed or cached) "
                        "again under this command's evaluation settings and rewrite their manifest's evaluation")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")

    def layers(ns) -> list[tuple[dict, str]]:
        out = []
        if ns.profile:
            section = load_profile(ns.profile).get("pretrain")
            if isinstance(section, str):  # "pretrain": "dino-offline": that profile's section, the same weights
                section = load_profile(section).get("pretrain")
            if not isinstance(section, dict):
                raise UserError(f"profile {ns.profile!r} has no \"pretrain\" section; pass flags, or a profile "
                                f"that has one (e.g. dino-offline)")
            out.append((section, f"profile {ns.profile} ({PROFILE_DIR / ns.profile}.json, \"pretrain\")"))
        return out + [(read_config_file(ns.config), str(ns.config))] if ns.config else out

    return parse_with_entries(parser, PretrainConfig, {"backbone": BACKBONES}, argv, layers)
