"""CIFAR-10 (Krizhevsky 2009) through torchvision's `CIFAR10`: from `<data_root>` (the extracted folder, or the
tarball as distributed) or its download. `load_cifar` serves CIFAR-100 too (benchmark/data/cifar100.py)."""

from __future__ import annotations

import sys
from pathlib import Path

from torchvision.datasets import CIFAR10

from benchmark.data.source import SourceData, file_digest, network_timeout
from benchmark.errors import UserError
from benchmark.registry import SOURCES


def _fetch(cls, title: str, root: Path, train: bool) -> str | None:
    """Extract a user-supplied tarball, else download; → the origin, or None (reason printed)."""
    had_tar = (root / cls.filename).is_file()
    try:
        with network_timeout(20):  # a tarball with the right md5 already in root is extracted, not fetched
            cls(root, train=train, download=True)
    except (OSError, RuntimeError) as e:  # URLError is an OSError; torchvision raises RuntimeError on bad md5
        print(f"[data] {title} download failed: {str(e).splitlines()[0][:200]}", file=sys.stderr)
        return None
    return "tarball" if had_tar else "download"


def load_cifar(cls, name: str, title: str, root: Path, train: bool, transform, download: bool) -> SourceData:
    """torchvision's `cls` (CIFAR10 or CIFAR100) from root's extracted folder, else its tarball in root, else the
    download; recorded as source `name`."""
    root, tar = Path(root), Path(root) / cls.filename
    folder = root / cls.base_folder
    files = [folder / f for f, _ in cls.train_list + cls.test_list]
    origin = "data-root" if all(f.is_file() for f in files) else None
    if origin is None and (download or tar.is_file()):
        origin = _fetch(cls, title, root, train)
    if origin is None:
        raise UserError(f"{title} not found: put {cls.filename} (from https://www.cs.toronto.edu/~kriz/cifar.html) "
                        f"at {tar} and rerun, or allow the download")
    try:
        ds = cls(root, train=train, transform=transform, download=False)
    except RuntimeError:  # torchvision's md5 check: "Dataset not found or corrupted"
        raise UserError(f"{title} files in {folder} are corrupted (md5 mismatch): delete the folder and put "
                        f"{cls.filename} at {tar}, or allow the download") from None
    return SourceData(ds, list(ds.targets), list(ds.classes), {
        "source": name, "loader": f"torchvision.datasets.{cls.__name__}", "files": str(folder.resolve()),
        "origin": origin, "sha256": file_digest(files), "n": len(ds)})


@SOURCES.register("cifar10", native_size=32, channels=3)
def cifar10(root: Path, train: bool, transform=None, download: bool = True, apt_install: bool = True) -> SourceData:
    return load_cifar(CIFAR10, "cifar10", "CIFAR-10", root, train, transform, download)
