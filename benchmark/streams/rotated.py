"""Rotated streams (domain-incremental; as Avalanche's `RotatedMNIST`): every task is the same classification of
the source's classes, each task's images rotated by its own fixed angle, the t-th `randint(-180, 181)` of
`numpy.random.RandomState(seed)` (Avalanche's draw), or `--rotated.angles` given. Nearest-neighbour rotation (as
torchvision's RandomRotation by default), corners filled with the background (black, −1 after normalisation).
Built as `permuted` is (benchmark/streams/permuted.py); meant for `--scenario domain-il`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms.functional import rotate

from benchmark.errors import UserError
from benchmark.registry import STREAMS
from benchmark.streams.permuted import DomainStreamConfig, domain_stream
from benchmark.streams.task_stream import Benchmark


@dataclass(frozen=True)
class RotatedConfig(DomainStreamConfig):
    angles: tuple[int, ...] = ()  # degrees per task, each in [−180, 180]; () = seeded, as Avalanche draws them

    @classmethod
    def stream_name(cls) -> str:
        return "rotated"

    def __post_init__(self):
        super().__post_init__()
        if self.angles and (len(self.angles) != self.tasks or any(not -180 <= a <= 180 for a in self.angles)):
            raise UserError(f"--rotated.angles needs {self.tasks} angles (--rotated.tasks), each in [-180, 180]; "
                            f"got {list(self.angles)}")


def rotate_by(angle: int):
    def apply(images: torch.Tensor) -> torch.Tensor:
        return rotate(images, float(angle), interpolation=InterpolationMode.NEAREST, fill=-1.0)
    return apply


@STREAMS.register("rotated", config_cls=RotatedConfig)
def rotated(cfg: RotatedConfig, *, seed: int, data_root: Path, download: bool = True,
            apt_install: bool = True) -> Benchmark:
    draw = np.random.RandomState(seed)
    angles = list(cfg.angles) or [int(draw.randint(-180, 181)) for _ in range(cfg.tasks)]
    return domain_stream(cfg, seed, data_root, download, apt_install, [rotate_by(a) for a in angles],
                         [f"t{t}_rotated_{a}deg" for t, a in enumerate(angles)])
