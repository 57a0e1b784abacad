"""Fashion-MNIST (Xiao et al. 2017) through torchvision's `FashionMNIST`.

Where the files are looked for, in order:
1. `<data_root>/FashionMNIST/raw/` (torchvision's own layout);
2. Debian's package `dataset-fashion-mnist` (`/usr/share/datasets/fashion-mnist/*.gz`). Debian recompressed the
   files, so their md5 differs from torchvision's list and copying the `.gz` fails the check; they are decompressed
   into torchvision's raw folder instead (same bytes as the originals);
3. torchvision's download (needs internet);
4. as root with `apt-get` available: install `dataset-fashion-mnist`, then 2.
Otherwise one error line names the fix.
"""

from __future__ import annotations

import gzip
import math
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

from torchvision.datasets import FashionMNIST

from benchmark.data.source import SourceData, atomic_copy_bytes, file_digest, network_timeout
from benchmark.errors import UserError
from benchmark.registry import SOURCES

RAW_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def debian_dir() -> Path:  # an env override lets tests stand in a fake package directory
    return Path(os.environ.get("HATSWAP_FASHION_MNIST_DEBIAN_DIR", "/usr/share/datasets/fashion-mnist"))


def raw_folder(root: Path) -> Path:
    """Where the four idx files live under a data root (torchvision's layout)."""
    return Path(root) / "FashionMNIST" / "raw"


def _complete(raw: Path) -> bool:
    return all((raw / f).is_file() for f in RAW_FILES)


def idx_problem(path: Path) -> str:
    """'' when `path` is a well-formed IDX file (LeCun's MNIST format): big-endian magic 0x00000800 + type byte
    (0x08 = uint8) + number of dims (3 for images, 1 for labels), the dims as int32, then exactly prod(dims) bytes."""
    ndim = 3 if "images" in path.name else 1
    size = path.stat().st_size
    if size == 0:
        return "empty"
    with open(path, "rb") as f:
        head = f.read(4 + 4 * ndim)
    if len(head) < 4 + 4 * ndim:
        return f"truncated ({size} bytes, shorter than its header)"
    if head[:4] != bytes([0, 0, 0x08, ndim]):
        return f"wrong magic number {head[:4].hex()} (an IDX {'image' if ndim == 3 else 'label'} file starts " \
               f"with 0000080{ndim})"
    dims = struct.unpack(f">{ndim}i", head[4:])
    expected = len(head) + math.prod(dims)
    if size != expected:
        return f"{'truncated' if size < expected else 'too long'} ({size} bytes; its header {list(dims)} says " \
               f"{expected})"
    return ""


def check_files(raw: Path) -> None:
    """Torchvision reads these with bare asserts (an `AssertionError` with no text and no path): check first."""
    for f in RAW_FILES:
        if why := idx_problem(raw / f):
            raise UserError(f"Fashion-MNIST file {raw / f} is {why}: delete it and rerun to restore it (Debian's "
                            f"package or the download), or put the original decompressed file there")


def _from_debian(raw: Path) -> bool:
    src = debian_dir()
    if not all((src / f"{f}.gz").is_file() for f in RAW_FILES):
        return False
    for f in RAW_FILES:
        with gzip.open(src / f"{f}.gz", "rb") as g:
            atomic_copy_bytes(g.read(), raw / f)
    print(f"[data] Fashion-MNIST: decompressed Debian's files from {src} into {raw}", file=sys.stderr)
    return True


def _download(root: Path) -> bool:
    try:
        with network_timeout(20):
            FashionMNIST(root, train=True, download=True)
            FashionMNIST(root, train=False, download=True)
    except (OSError, RuntimeError) as e:  # URLError is an OSError; torchvision raises RuntimeError on bad md5
        print(f"[data] Fashion-MNIST download failed: {str(e).splitlines()[0][:200]}", file=sys.stderr)
        return False
    return _complete(raw_folder(root))


def _apt_install() -> bool:
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return False
    print("[data] Fashion-MNIST: installing Debian's package `dataset-fashion-mnist` (apt-get update; apt-get "
          "install -y dataset-fashion-mnist)", file=sys.stderr)
    for cmd in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "dataset-fashion-mnist"]):
        if subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode != 0:
            print(f"[data] `{' '.join(cmd)}` failed", file=sys.stderr)
            return False
    return True


def ensure_files(root: Path, download: bool = True, apt_install: bool = True) -> str:
    """Make `<root>/FashionMNIST/raw` complete and well-formed; return how ('data-root', 'debian', 'download',
    'apt')."""
    raw = raw_folder(root)
    if _complete(raw):
        origin = "data-root"
    elif _from_debian(raw):
        origin = "debian"
    elif download and _download(root):
        origin = "download"
    elif apt_install and _apt_install() and _from_debian(raw):
        origin = "apt"
    else:
        tried = "the download failed (no internet?)" if download else "downloading is off (--no-download)"
        raise UserError(
            f"Fashion-MNIST not found and {tried}: install Debian's package (`sudo apt-get install "
            f"dataset-fashion-mnist`, files in {debian_dir()}) or put {', '.join(RAW_FILES)} (decompressed) in {raw}")
    check_files(raw)
    return origin

@SOURCES.register("fashion_mnist", native_size=28, channels=1)
def fashion_mnist(root: Path, train: bool, transform=None, download: bool = True,
                  apt_install: bool = True) -> SourceData:
    origin = ensure_files(root, download=download, apt_install=apt_install)
    ds = FashionMNIST(root, train=train, transform=transform, download=False)
    raw = raw_folder(root)
    return SourceData(ds, ds.targets.tolist(), list(ds.classes), {
        "source": "fashion_mnist", "loader": "torchvision.datasets.FashionMNIST", "files": str(raw.resolve()),
        "origin": origin, "sha256": file_digest([raw / f for f in RAW_FILES]), "n": len(ds)})
