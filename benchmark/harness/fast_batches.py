"""A fast path for runs on cached features: batches gathered by index from tensors, inside Avalanche's template.

On cached features the network is a few small layers, so a training step is dominated by building its batch:
Avalanche's loaders fetch every sample through several dataset layers (task-balanced or replay concatenation,
subsets, data attributes) and collate them one by one. This plugin keeps Avalanche's loader for what it decides —
which indices go into which batch, in which order — and replaces only the fetching: at the start of every
experience (and every evaluation) it resolves each index of the loader's dataset to its row of the cached feature
array once, and each batch is then three tensor gathers, on the training device (the features are kept there).

The order of batches and the random numbers drawn are exactly those of the original loader (the same batch sampler
is iterated, and the one seed draw a torch DataLoader iterator makes is made too), so the run is bit-identical to
the slow path: a test compares R and the losses of every strategy. Before use, a sample of batches built both ways
is compared value for value; anything this module does not understand (another dataset type, transforms, worker
processes) keeps the original loader.
"""

from __future__ import annotations

import numpy as np
import torch
from avalanche.benchmarks.utils import AvalancheDataset
from avalanche.benchmarks.utils.data_loader import MultiDatasetDataLoader
from avalanche.benchmarks.utils.flat_data import FlatData
from avalanche.core import SupervisedPlugin
from torch.utils.data import ConcatDataset, DataLoader, Subset

from benchmark.harness.feature_cache import CachedFeatures
from benchmark.runtime.state import Stateful


class _Unsupported(Exception):
    pass


def _resolve(ds, idx: np.ndarray, pos: np.ndarray, out: list) -> None:
    """Map positions `pos` holding indices `idx` of `ds` to (CachedFeatures leaf, its rows, pos), appended to out."""
    if len(idx) == 0:
        return
    if isinstance(ds, CachedFeatures):
        out.append((ds, idx, pos))
    elif isinstance(ds, AvalancheDataset):
        _resolve(ds._flat_data, idx, pos, out)
    elif isinstance(ds, FlatData):
        if ds._indices is not None:
            idx = np.asarray(ds._indices, dtype=np.int64)[idx]
        _split(ds._datasets, np.asarray(ds._cumulative_sizes, dtype=np.int64), idx, pos, out)
    elif isinstance(ds, ConcatDataset):
        _split(ds.datasets, np.asarray(ds.cumulative_sizes, dtype=np.int64), idx, pos, out)
    elif isinstance(ds, Subset):
        _resolve(ds.dataset, np.asarray(ds.indices, dtype=np.int64)[idx], pos, out)
    else:
        raise _Unsupported(type(ds).__name__)


def _split(datasets, cumulative: np.ndarray, idx, pos, out) -> None:
    which = np.searchsorted(cumulative, idx, side="right")
    for k in np.unique(which):
        sel = which == k
        _resolve(datasets[k], idx[sel] - (cumulative[k - 1] if k else 0), pos[sel], out)


def _task_labels(ds) -> torch.Tensor:
    if isinstance(ds, ConcatDataset):
        return torch.cat([_task_labels(d) for d in ds.datasets])
    if not isinstance(ds, AvalancheDataset) or "targets_task_labels" not in ds._data_attributes:
        raise _Unsupported("no task labels")
    getitem = [name for name, da in ds._data_attributes.items() if da.use_in_getitem]
    if getitem != ["targets_task_labels"]:  # a sample carries exactly (x, y, task label)
        raise _Unsupported(f"data attributes in getitem: {getitem}")
    return torch.as_tensor(np.asarray(ds.targets_task_labels.data, dtype=np.int64))


class _Gathered:
    """Every sample of `dataset` as rows of three tensors, index-aligned with the dataset."""

    def __init__(self, dataset, device=None):
        n = len(dataset)
        parts: list = []
        _resolve(dataset, np.arange(n, dtype=np.int64), np.arange(n, dtype=np.int64), parts)
        width = parts[0][0].feats.shape[1]
        dtype = parts[0][0].feats.dtype  # float32, or float64 under --dtype float64
        self.x = torch.empty(n, width, dtype=torch.from_numpy(np.empty(0, dtype)).dtype)
        self.y = torch.empty(n, dtype=torch.long)
        for leaf, rows, pos in parts:
            self.x[pos] = torch.from_numpy(np.asarray(leaf.feats[rows], dtype=dtype))
            self.y[pos] = leaf.targets[rows]
        self.t = _task_labels(dataset)
        if len(self.t) != n:
            raise _Unsupported("task labels do not cover the dataset")
        if device is not None:  # kept on the device: a batch is gathered there, no host-to-device copy per step
            self.x, self.y, self.t = self.x.to(device), self.y.to(device), self.t.to(device)

    def batch(self, idx) -> list[torch.Tensor]:
        i = torch.as_tensor(idx, dtype=torch.long, device=self.x.device)
        return [self.x[i], self.y[i], self.t[i]]


def _same(fast: list, slow) -> bool:
    slow = list(slow)
    return len(fast) == len(slow) and all(
        isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape and torch.equal(a.cpu(), b)
        for a, b in zip(fast, slow, strict=True))


def _checked(gathered: _Gathered, dataset, collate_fn) -> _Gathered:
    n = len(dataset)
    probe = sorted({0, n - 1, *np.linspace(0, n - 1, 16, dtype=int).tolist()})
    if not _same(gathered.batch(probe), collate_fn([dataset[i] for i in probe])):
        raise _Unsupported("gathered batch differs from the dataset's own")
    return gathered


def _iterate(loader: DataLoader, gathered: _Gathered):
    """The batches `loader` would yield, in its order, drawing the random numbers its iterator would draw."""
    it = iter(loader.batch_sampler)
    torch.empty((), dtype=torch.int64).random_(generator=loader.generator)  # as _BaseDataLoaderIter.__init__ does
    for idx in it:
        yield gathered.batch(idx)


class _FastTorchLoader:
    def __init__(self, loader: DataLoader, device=None):
        if loader.batch_sampler is None or loader.num_workers:
            raise _Unsupported("no batch sampler, or worker processes")
        self.loader = loader
        self.gathered = _checked(_Gathered(loader.dataset, device), loader.dataset, loader.collate_fn)

    def __iter__(self):
        return _iterate(self.loader, self.gathered)

    def __len__(self) -> int:
        return len(self.loader)


class _FastMultiLoader:
    """Avalanche's task-balanced / replay loaders: a new torch DataLoader (new samplers) over the same concatenated
    datasets every epoch."""

    def __init__(self, loader: MultiDatasetDataLoader, device=None):
        if loader.loader_kwargs.get("num_workers", 0):
            raise _Unsupported("worker processes")
        self.loader = loader
        concat = ConcatDataset(loader.datasets)
        self.gathered = _checked(_Gathered(concat, device), concat, loader.loader_kwargs["collate_fn"])

    def __iter__(self):
        return _iterate(self.loader._get_loader(), self.gathered)

    def __len__(self) -> int:
        return len(self.loader)


def fast(loader, device=None):
    """`loader` with gathered batches (held on `device`), or `loader` itself (and why not) when this module does not
    understand it."""
    try:
        if isinstance(loader, MultiDatasetDataLoader):
            return _FastMultiLoader(loader, device), None
        if isinstance(loader, DataLoader):
            return _FastTorchLoader(loader, device), None
        raise _Unsupported(type(loader).__name__)
    except _Unsupported as e:
        return loader, str(e)


class FastCachedBatches(Stateful, SupervisedPlugin):
    """Installs the fast loaders for a run on cached features (benchmark/harness/run.py adds it only then)."""

    state_attrs, rebuilt_attrs = ("fallbacks",), ("log",)

    def __init__(self, log=print):
        super().__init__()
        self.log, self.fallbacks = log, []

    def _swap(self, strategy) -> None:
        if isinstance(strategy.dataloader, _FastTorchLoader | _FastMultiLoader):
            return
        strategy.dataloader, why = fast(strategy.dataloader, strategy.device)
        if why and why not in self.fallbacks:
            self.fallbacks.append(why)
            self.log(f"fast cached batches not used for this loader ({why}); the original loader runs")

    def before_training_epoch(self, strategy, **kwargs):
        # not before_training_exp: plugins such as replay install their own loader there, after the template's
        self._swap(strategy)

    def before_eval_exp(self, strategy, **kwargs):
        self._swap(strategy)
