"""Shared fixtures: small datasets written in the real on-disk formats, so torchvision's own loaders read them."""

from __future__ import annotations

import atexit
import builtins
import errno
import gzip
import io
import os
import shutil
import struct
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest

warnings.filterwarnings("ignore", module=r"(avalanche|qpsolvers)(\..*)?")

# Never let a test find the machine's real Debian files unless it asks to (tests must not depend on them).
os.environ["HATSWAP_FASHION_MNIST_DEBIAN_DIR"] = "/nonexistent/hatswap-tests"
# Nor the user's caches: the feature cache ($XDG_CACHE_HOME/hatswap) and the Hugging Face cache start empty.
_CACHE_HOME = tempfile.mkdtemp(prefix="hatswap-test-cache-")
atexit.register(shutil.rmtree, _CACHE_HOME, ignore_errors=True)
os.environ["XDG_CACHE_HOME"] = _CACHE_HOME
for _var in ("HF_HOME", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
    os.environ.pop(_var, None)

PER_CLASS_TRAIN, PER_CLASS_TEST = 30, 12


def idx_images(images: np.ndarray) -> bytes:
    """IDX format (LeCun's MNIST files): magic 0x00000803, then dims as big-endian int32, then uint8 pixels."""
    n, h, w = images.shape
    return struct.pack(">iiii", 0x0803, n, h, w) + images.astype(np.uint8).tobytes()


def idx_labels(labels: np.ndarray) -> bytes:
    return struct.pack(">ii", 0x0801, len(labels)) + labels.astype(np.uint8).tobytes()


def fake_images(labels: np.ndarray, size: int, channels: int, seed: int) -> np.ndarray:
    """Learnable images: class c lights up a band whose position depends on c, plus noise."""
    rng = np.random.default_rng(seed)
    imgs = rng.integers(0, 60, size=(len(labels), size, size, channels))
    for i, c in enumerate(labels):
        row = 2 + int(c) * (size - 4) // 10
        imgs[i, row : row + 3, :, :] = 230
    return imgs.astype(np.uint8)


def fashion_mnist_files(seed: int = 0) -> dict[str, bytes]:
    out = {}
    for split, per in (("train", PER_CLASS_TRAIN), ("t10k", PER_CLASS_TEST)):
        labels = np.repeat(np.arange(10), per)
        np.random.default_rng(seed + len(split)).shuffle(labels)
        out[f"{split}-images-idx3-ubyte"] = idx_images(fake_images(labels, 28, 1, seed + per)[..., 0])
        out[f"{split}-labels-idx1-ubyte"] = idx_labels(labels)
    return out


def write_fashion_mnist(root: Path, gz: bool = False) -> Path:
    """root/FashionMNIST/raw/<files> (torchvision's layout), or plain root/<files>.gz (Debian's layout)."""
    folder = root if gz else root / "FashionMNIST" / "raw"
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in fashion_mnist_files().items():
        if gz:
            (folder / f"{name}.gz").write_bytes(gzip.compress(data))
        else:
            (folder / name).write_bytes(data)
    return folder


@pytest.fixture(scope="session")
def fmnist_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    write_fashion_mnist(root)
    return root


def tiny_args(out_dir: Path, data_root: Path, *extra: str) -> list[str]:
    """A run that takes about a second: the smoke profile on the fixture data, offline."""
    return ["--profile", "smoke", "--data-root", str(data_root), "--out-dir", str(out_dir), "--no-download",
            "--no-apt-install", *extra]


@pytest.fixture
def tiny(tmp_path, fmnist_root):
    def make(*extra: str) -> list[str]:
        return tiny_args(tmp_path / "results", fmnist_root, *extra)

    return make


def tiny_dense_args(out_dir: Path, data_root: Path, *extra: str) -> list[str]:
    """The dense suite in seconds: offline scenes from the fixture Fashion-MNIST, the smoke profile's tiny ViT."""
    return tiny_args(out_dir, data_root, "--stream", "dense_suite", "--dense_suite.train-per-task", "24",
                     "--dense_suite.test-per-task", "12", "--vit_tiny.patch-size", "8", "--batch-size", "8",
                     "--epochs", "1", *extra)


@pytest.fixture
def tiny_dense(tmp_path, fmnist_root):
    def make(*extra: str) -> list[str]:
        return tiny_dense_args(tmp_path / "results", fmnist_root, *extra)

    return make


class _FileOnAFullDisk:
    """A file opened for writing on a full disk: created, but every write of data fails as the kernel's does."""

    def __init__(self, file):
        self._file = file

    def write(self, data):
        if len(data):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return 0

    def __getattr__(self, name):
        return getattr(self._file, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._file.close()


@pytest.fixture
def full_disk(monkeypatch):
    """full_disk(root): from now on the disk under `root` is full: a file or folder can still be made there (an
    inode is free), but writing a byte into a file fails with ENOSPC, through Python's files (open, pathlib,
    torch.save and np.save to a file object) and os.write alike. Writes by C++ or Rust code to a path of its own do
    not go through Python: they are not covered."""
    real_io_open, real_write, roots = io.open, os.write, []

    def under(path) -> bool:
        return any(os.path.abspath(path).startswith(f"{root}{os.sep}") for root in roots)

    def open_on_full_disk(file, mode="r", *args, **kwargs):
        opened = real_io_open(file, mode, *args, **kwargs)
        writing = isinstance(file, (str, os.PathLike)) and any(c in mode for c in "wax+") and under(file)
        return _FileOnAFullDisk(opened) if writing else opened

    def write_on_full_disk(fd, data):
        try:
            path = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # not an open file: the real write says so
            path = ""
        if len(data) and under(path):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    def fill(root: Path) -> None:
        if not roots:
            monkeypatch.setattr(io, "open", open_on_full_disk)  # pathlib's writes
            monkeypatch.setattr(builtins, "open", open_on_full_disk)
            monkeypatch.setattr(os, "write", write_on_full_disk)
        roots.append(os.path.abspath(root))

    return fill


def pytest_configure(config):
    import torch

    torch.set_num_threads(1)  # tiny models: one thread is faster than two and immune to oversubscription


def pytest_collection_modifyitems(config, items):
    """slow/gpu tests are skipped by default, with the reason shown in the summary (-ra)."""
    import torch

    slow = pytest.mark.skip(reason="slow: set HATSWAP_SLOW=1 to run")
    gpu = pytest.mark.skip(reason="gpu: no CUDA device visible")
    for item in items:
        if "slow" in item.keywords and os.environ.get("HATSWAP_SLOW") != "1":
            item.add_marker(slow)
        if "gpu" in item.keywords and not torch.cuda.is_available():
            item.add_marker(gpu)


TINY_VIT = ["--vit_tiny.embed-dim", "16", "--vit_tiny.depth", "1", "--vit_tiny.num-heads", "2"]


@pytest.fixture
def tiny_pretrain(tmp_path, fmnist_root):
    """`hatswap pretrain` flags for a pretraining in seconds: a 16-wide one-block ViT on the fixture data."""
    def make(*extra: str, out="pt"):
        return ["--data-root", str(fmnist_root), "--out-dir", str(tmp_path / out), "--no-download",
                "--no-apt-install", "--batch-size", "64", "--out-dim", "32", "--head-hidden", "16",
                "--head-bottleneck", "8", "--local-crops", "2", "--device", "cpu", *TINY_VIT, *extra]

    return make
