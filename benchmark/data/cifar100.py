"""CIFAR-100 (Krizhevsky 2009) through torchvision's `CIFAR100`, its 100 fine classes as labels: from `<data_root>`
(the extracted folder, or cifar-100-python.tar.gz as distributed) or its download (benchmark/data/cifar10.py)."""

from __future__ import annotations

from pathlib import Path

from torchvision.datasets import CIFAR100

from benchmark.data.cifar10 import load_cifar
from benchmark.data.source import SourceData
from benchmark.registry import SOURCES


@SOURCES.register("cifar100", native_size=32, channels=3)
def cifar100(root: Path, train: bool, transform=None, download: bool = True, apt_install: bool = True) -> SourceData:
    return load_cifar(CIFAR100, "cifar100", "CIFAR-100", root, train, transform, download)
