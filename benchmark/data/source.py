"""What every source returns, and the offline-aware helpers they share."""

from __future__ import annotations

import hashlib
import os
import socket
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from torch.utils.data import Dataset


@dataclass
class SourceData:
    """A torchvision dataset plus where it came from (recorded in every run's config.json)."""

    dataset: Dataset  # yields (image tensor C×H×W, int label)
    targets: list[int]  # ds.targets without touching the images
    classes: list[str]
    provenance: dict = field(default_factory=dict)  # {"source", "files", "origin", "sha256"...}


def file_digest(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for p in sorted(paths):
        with open(p, "rb") as f:
            while chunk := f.read(1 << 22):
                h.update(chunk)
    return h.hexdigest()


@contextmanager
def network_timeout(seconds: float):
    """Bound torchvision's download: on a machine without internet it must fail fast, not hang."""
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(old)


def atomic_copy_bytes(data: bytes, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.tmp-{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, dest)
