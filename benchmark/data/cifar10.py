"""CIFAR-10 (Krizhevsky 2009) through torchvision's `CIFAR10`: from `<data_root>` or its download."""

from __future__ import annotations

import sys
from pathlib import Path

from torchvision.datasets import CIFAR10

from benchmark.data.source import SourceData, file_digest, network_timeout
from benchmark.errors import UserError
from benchmark.registry import SOURCES


def _fetch(root: Path, train: bool) -> str | None:
    """Extract a user-supplied tarball, else download; → the origin, or None (reason printed)."""
    had_tar = (root / CIFAR10.filename).is_file()
    try:
        with network_timeout(20):  # a tarball with the right md5 already in root is extracted, not fetched
            CIFAR10(root, train=train, download=True)
    except (OSError, RuntimeError) as e:  # URLError is an OSError; torchvision raises RuntimeError on bad md5
        print(f"[data] CIFAR-10 download failed: {str(e).splitlines()[0][:200]}", file=sys.stderr)
        return None
    return "tarball" if had_tar else "download"


@SOURCES.register("cifar10", native_size=32, channels=3)
def cifar10(root: Path, train: bool, transform=None, download: bool = True, apt_install: bool = True) -> SourceData:
    root, tar = Path(root), Path(root) / CIFAR10.filename
    folder = root / CIFAR10.base_folder
    files = [folder / name for name, _ in CIFAR10.train_list + CIFAR10.test_list]
    origin = "data-root" if all(f.is_file() for f in files) else None
    if origin is None and (download or tar.is_file()):
        origin = _fetch(root, train)
    if origin is None:
        raise UserError(f"CIFAR-10 not found: put cifar-10-python.tar.gz (from "
                        f"https://www.cs.toronto.edu/~kriz/cifar.html) at {tar} and rerun, or allow the download")
    try:
        ds = CIFAR10(root, train=train, transform=transform, download=False)
    except RuntimeError:  # torchvision's md5 check: "Dataset not found or corrupted"
        raise UserError(f"CIFAR-10 files in {folder} are corrupted (md5 mismatch): delete the folder and put "
                        f"cifar-10-python.tar.gz at {tar}, or allow the download") from None
    return SourceData(ds, list(ds.targets), list(ds.classes), {
        "source": "cifar10", "loader": "torchvision.datasets.CIFAR10", "files": str(folder.resolve()),
        "origin": origin, "sha256": file_digest(files), "n": len(ds)})
