"""CIFAR-10 (Krizhevsky 2009) through torchvision's `CIFAR10`: from `<data_root>` or its download."""

from __future__ import annotations

import sys
from pathlib import Path

from torchvision.datasets import CIFAR10

from benchmark.data.source import SourceData, file_digest, network_timeout
from benchmark.errors import UserError
from benchmark.registry import SOURCES


@SOURCES.register("cifar10", native_size=32, channels=3)
def cifar10(root: Path, train: bool, transform=None, download: bool = True, apt_install: bool = True) -> SourceData:
    root = Path(root)
    origin = "data-root"
    try:
        ds = CIFAR10(root, train=train, transform=transform, download=False)
    except RuntimeError:  # torchvision: "Dataset not found or corrupted"
        tar = root / CIFAR10.filename
        if not (download or tar.is_file()):
            ds = None
        else:
            try:
                with network_timeout(20):  # a valid tar already in root is extracted, not fetched
                    CIFAR10(root, train=train, download=True)
                ds, origin = CIFAR10(root, train=train, transform=transform, download=False), "download"
            except (OSError, RuntimeError) as e:
                print(f"[data] CIFAR-10 download failed: {str(e).splitlines()[0][:200]}", file=sys.stderr)
                ds = None
        if ds is None:
            raise UserError(f"CIFAR-10 not found: put cifar-10-python.tar.gz (from "
                            f"https://www.cs.toronto.edu/~kriz/cifar.html) at {tar} and rerun, or allow the download")
    folder = root / CIFAR10.base_folder
    files = [folder / name for name, _ in CIFAR10.train_list + CIFAR10.test_list]
    return SourceData(ds, list(ds.targets), list(ds.classes), {
        "source": "cifar10", "loader": "torchvision.datasets.CIFAR10", "files": str(folder.resolve()),
        "origin": origin, "sha256": file_digest(files), "n": len(ds)})
