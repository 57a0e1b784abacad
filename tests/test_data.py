"""The real torchvision loaders on small files in the real on-disk formats."""

import hashlib
import io
import pickle
import tarfile
import types

import numpy as np
import pytest
from torchvision.datasets import CIFAR10, CIFAR100

from benchmark.errors import UserError
from benchmark.registry import SOURCES
from tests.conftest import PER_CLASS_TEST, PER_CLASS_TRAIN, fake_images, write_fashion_mnist


def test_fashion_mnist_from_data_root(fmnist_root):
    src = SOURCES.get("fashion_mnist").build(fmnist_root, train=True, download=False, apt_install=False)
    assert len(src.dataset) == 10 * PER_CLASS_TRAIN and sorted(set(src.targets)) == list(range(10))
    assert src.classes[1] == "Trouser" and src.provenance["origin"] == "data-root"
    assert len(src.provenance["sha256"]) == 64
    img, label = src.dataset[0]
    assert img.size == (28, 28) and label == src.targets[0]


def test_fashion_mnist_from_debian_package_layout(tmp_path, monkeypatch):
    debian = tmp_path / "usr-share-datasets-fashion-mnist"
    write_fashion_mnist(debian, gz=True)  # Debian ships the four .gz files, recompressed
    monkeypatch.setenv("HATSWAP_FASHION_MNIST_DEBIAN_DIR", str(debian))
    root = tmp_path / "data"
    src = SOURCES.get("fashion_mnist").build(root, train=False, download=False, apt_install=False)
    assert src.provenance["origin"] == "debian" and len(src.dataset) == 10 * PER_CLASS_TEST
    assert (root / "FashionMNIST" / "raw" / "t10k-images-idx3-ubyte").is_file()
    again = SOURCES.get("fashion_mnist").build(root, train=False, download=False, apt_install=False)
    assert again.provenance["origin"] == "data-root"  # decompressed once, then found in place


def test_fashion_mnist_missing_names_the_fix(tmp_path):
    with pytest.raises(UserError) as e:
        SOURCES.get("fashion_mnist").build(tmp_path / "empty", train=True, download=False, apt_install=False)
    msg = str(e.value)
    assert "apt-get install dataset-fashion-mnist" in msg and str(tmp_path / "empty" / "FashionMNIST" / "raw") in msg
    assert not list((tmp_path / "empty").rglob("*-ubyte"))  # nothing half-written


def _cifar_batch(n: int, seed: int) -> dict:
    labels = np.random.default_rng(seed).integers(0, 10, n)
    imgs = fake_images(labels, 32, 3, seed).transpose(0, 3, 1, 2).reshape(n, -1)  # CIFAR stores CHW rows
    return {"data": imgs, "labels": labels.tolist(), "batch_label": "fake"}


def write_cifar_tar(path):
    """cifar-10-python.tar.gz as distributed: cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}."""
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    with tarfile.open(path, "w:gz") as tar:
        for i, name in enumerate(names + ["batches.meta"]):
            obj = {"label_names": CIFAR_CLASSES} if name == "batches.meta" else \
                _cifar_batch(20, i)
            data = pickle.dumps(obj)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def cifar_tarball_root(tmp_path, monkeypatch):
    """tmp_path/data holding a small cifar-10-python.tar.gz; torchvision's md5 list is pointed at its files, so
    torchvision's real extraction and loading code runs unchanged."""
    root = tmp_path / "data"
    root.mkdir()
    tar = root / "cifar-10-python.tar.gz"
    write_cifar_tar(tar)
    monkeypatch.setattr(CIFAR10, "tgz_md5", hashlib.md5(tar.read_bytes()).hexdigest())
    with tarfile.open(tar) as t:
        md5 = {m.name.split("/")[-1]: hashlib.md5(t.extractfile(m).read()).hexdigest() for m in t.getmembers()}
    monkeypatch.setattr(CIFAR10, "train_list", [[n, md5[n]] for n, _ in CIFAR10.train_list])
    monkeypatch.setattr(CIFAR10, "test_list", [[n, md5[n]] for n, _ in CIFAR10.test_list])
    monkeypatch.setattr(CIFAR10, "meta", CIFAR10.meta | {"md5": md5["batches.meta"]})
    return root


def test_cifar10_from_a_user_supplied_tarball(tmp_path, monkeypatch):
    root = cifar_tarball_root(tmp_path, monkeypatch)
    src = SOURCES.get("cifar10").build(root, train=True, download=False)
    assert len(src.dataset) == 100 and src.classes == CIFAR_CLASSES
    img, label = src.dataset[3]
    assert img.size == (32, 32) and label == src.targets[3]


def test_cifar10_missing_names_the_tarball(tmp_path):
    with pytest.raises(UserError) as e:
        SOURCES.get("cifar10").build(tmp_path, train=True, download=False)
    assert "put cifar-10-python.tar.gz" in str(e.value) and str(tmp_path / "cifar-10-python.tar.gz") in str(e.value)


def cifar100_tarball_root(tmp_path, monkeypatch, per_class: int = 2):
    """tmp_path/data holding a small cifar-100-python.tar.gz as distributed: cifar-100-python/{train, test, meta},
    fine and coarse labels; torchvision's md5 list is pointed at its files."""
    root = tmp_path / "data"
    root.mkdir()
    tar_path, md5 = root / "cifar-100-python.tar.gz", {}
    with tarfile.open(tar_path, "w:gz") as tar:
        for i, name in enumerate(("train", "test", "meta")):
            if name == "meta":
                obj = {"fine_label_names": [f"class{c:02d}" for c in range(100)],
                       "coarse_label_names": [f"super{c:02d}" for c in range(20)]}
            else:
                labels = np.repeat(np.arange(100), per_class)
                imgs = fake_images(labels, 32, 3, i).transpose(0, 3, 1, 2).reshape(len(labels), -1)
                obj = {"data": imgs, "fine_labels": labels.tolist(), "coarse_labels": (labels // 5).tolist()}
            data = pickle.dumps(obj)
            md5[name] = hashlib.md5(data).hexdigest()
            info = tarfile.TarInfo(f"cifar-100-python/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    monkeypatch.setattr(CIFAR100, "tgz_md5", hashlib.md5(tar_path.read_bytes()).hexdigest())
    monkeypatch.setattr(CIFAR100, "train_list", [["train", md5["train"]]])
    monkeypatch.setattr(CIFAR100, "test_list", [["test", md5["test"]]])
    monkeypatch.setattr(CIFAR100, "meta", CIFAR100.meta | {"md5": md5["meta"]})
    return root


def test_cifar100_from_a_user_supplied_tarball_and_its_split_stream(tmp_path, monkeypatch):
    from benchmark.registry import STREAMS
    from benchmark.streams.split_classes import SplitClassesConfig

    root = cifar100_tarball_root(tmp_path, monkeypatch)
    src = SOURCES.get("cifar100").build(root, train=True, download=False)
    assert len(src.dataset) == 200 and src.classes[7] == "class07" and src.targets[:3] == [0, 0, 1]
    assert src.provenance["origin"] == "tarball" and src.provenance["loader"] == "torchvision.datasets.CIFAR100"
    bench = STREAMS.get("split_classes").build(SplitClassesConfig(source="cifar100", tasks=10, train_per_task=0),
                                               seed=0, data_root=root, download=False, apt_install=False)
    assert [t.about["classes"] for t in bench.tasks][3] == list(range(30, 40))
    assert [len(e.dataset) for e in bench.scenario.train_stream] == [20] * 10  # 10 classes × 2 images a task
    with pytest.raises(UserError, match="put cifar-100-python.tar.gz"):
        SOURCES.get("cifar100").build(tmp_path / "none", train=True, download=False)


def test_fashion_mnist_installs_debians_package_as_a_last_resort(tmp_path, monkeypatch, capsys):
    """As root with apt-get: `apt-get update`, `apt-get install -y dataset-fashion-mnist`, then its files are used."""
    import benchmark.data.fashion_mnist as fm

    debian = tmp_path / "debian"
    monkeypatch.setenv("HATSWAP_FASHION_MNIST_DEBIAN_DIR", str(debian))
    monkeypatch.setattr(fm.os, "geteuid", lambda: 0)
    monkeypatch.setattr(fm.shutil, "which", lambda name: f"/usr/bin/{name}")
    commands = []

    def fake_apt(cmd, **kwargs):  # stands in for apt: installing the package puts the .gz files in place
        commands.append(cmd)
        if "install" in cmd:
            write_fashion_mnist(debian, gz=True)
        return types.SimpleNamespace(returncode=0)

    monkeypatch.setattr(fm.subprocess, "run", fake_apt)
    src = SOURCES.get("fashion_mnist").build(tmp_path / "data", train=True, download=False, apt_install=True)
    assert src.provenance["origin"] == "apt" and len(src.dataset) == 10 * PER_CLASS_TRAIN
    assert commands == [["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "dataset-fashion-mnist"]]
    assert "installing Debian's package" in capsys.readouterr().err


def test_fashion_mnist_no_apt_when_not_root(tmp_path, monkeypatch):
    import benchmark.data.fashion_mnist as fm

    monkeypatch.setattr(fm.os, "geteuid", lambda: 1000)
    monkeypatch.setattr(fm.subprocess, "run", lambda *a, **k: pytest.fail("apt-get must not run without root"))
    with pytest.raises(UserError, match="sudo apt-get install dataset-fashion-mnist"):
        SOURCES.get("fashion_mnist").build(tmp_path / "data", train=True, download=False, apt_install=True)


def test_a_subsample_is_materialised_once_per_process_and_the_cache_is_bounded(monkeypatch):
    import torch
    from torch.utils.data import TensorDataset

    from benchmark.data import loading

    ds = TensorDataset(torch.arange(40.0).view(10, 4), torch.zeros(10))
    first = loading.materialize_images(ds, np.array([1, 3, 5]))
    assert torch.equal(first, torch.arange(40.0).view(10, 4)[[1, 3, 5]])
    assert loading.materialize_images(ds, np.array([1, 3, 5])) is first  # the same subsample: reused
    assert loading.materialize_images(ds, np.array([1, 3, 6])) is not first
    monkeypatch.setattr(loading, "MATERIALIZED_BYTES", 8 * 48)  # room for eight 3×4 float32 subsamples
    for k in range(8):  # eight newer subsamples evict the least recently used one
        loading.materialize_images(ds, np.array([0, 2, k + 2]))
    assert loading.materialize_images(ds, np.array([1, 3, 5])) is not first
