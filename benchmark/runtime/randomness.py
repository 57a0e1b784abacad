"""Who draws which random numbers in a continual run, so that runs of different strategies at one seed are paired:
a difference between two strategies' R at seed k measures the methods, not which random numbers each happened to
draw. At a given run seed every strategy gets

    initial weights      torch's global generator seeded with the run seed just before the model is built
                         (benchmark/harness/run.py)
    training data order  the harness's data-order generator, seeded from (run seed, training k) at the start of
                         the k-th training call (an experience; joint training's single call), installed on the
                         training loader's sampler of the experience's own data (`PairedRandomness`)
    everything else the  torch's global generator (dropout masks, mostly), reseeded from (run seed, training k) at
    model draws          the same point, so what a strategy drew during earlier experiences (an importance pass, a
                         memory) cannot shift the next one
    evaluation data      the stream's test sets, fixed by the stream's seed; the model is in eval mode (no
                         dropout), and the one seed each torch DataLoader iterator draws from the global generator
                         is undone by the reseed at the next training call

and a strategy's own randomness comes from its own generator, `own_generator(strategy, name)`, seeded from (run
seed, name): memory sampling (replay's exemplars and its memory batches' order, DER's reservoir, GEM/A-GEM's
memories, GDumb's evictions), importance subsets (EWC, MAS). Its extra forward passes in training mode (DER's,
GEM's and A-GEM's memory batches) run under `own_rng`, so their dropout masks come from that generator and leave
the global one where the same step of a naive run leaves it. The test: EWC and MAS at λ = 0, SI at c = 0 and LwF
at α = 0 reproduce naive's matrix.csv byte for byte (tests/test_paired_runs.py).
"""

from __future__ import annotations

import contextlib
import hashlib

import torch
from avalanche.benchmarks.utils import data_loader as avalanche_loaders
from avalanche.core import SupervisedPlugin
from torch.utils.data import DataLoader, RandomSampler

from benchmark.runtime.state import Stateful


def derived_seed(seed: int, *names) -> int:
    """A seed for one consumer of randomness, from the run seed and the consumer's name: independent streams
    (sha256, not seed + i, so no two consumers' streams overlap)."""
    text = "/".join(map(str, (seed, *names)))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") >> 1  # < 2**63, as torch requires


def own_generator(strategy, name: str) -> torch.Generator:
    """The generator of strategy component `name` (one per name and strategy, created on first use), seeded from the
    run seed the harness set on the strategy (`strategy.run_seed`), or from torch's initial seed where no harness
    ran (a plugin driven by hand in a test)."""
    generators = strategy.__dict__.setdefault("_own_generators", {})
    if name not in generators:
        seed = getattr(strategy, "run_seed", None)
        generators[name] = torch.Generator().manual_seed(derived_seed(torch.initial_seed() if seed is None else seed,
                                                                      "strategy", name))
    return generators[name]


@contextlib.contextmanager
def own_rng(generator: torch.Generator, device=None):
    """Global draws inside (dropout in an extra forward pass) come from a seed drawn from `generator`; the global
    generator (and the device's, on CUDA) is as it was when the block ends."""
    devices = [torch.device(device)] if device is not None and torch.device(device).type == "cuda" else []
    with torch.random.fork_rng(devices=devices, device_type="cuda" if devices else "cpu"):
        seed = int(torch.randint(2**62, (1,), generator=generator))
        torch.default_generator.manual_seed(seed)
        for cuda in devices:  # only the device fork_rng restores (torch.manual_seed would seed every GPU)
            with torch.cuda.device(cuda):
                torch.cuda.manual_seed(seed)
        yield


def _seeded_samplers(order: torch.Generator, memory: torch.Generator):
    """Avalanche's MultiDatasetDataLoader._create_samplers, with a generator per dataset: the first (the
    experience's own data, for the task-balanced and replay loaders alike) draws from `order`, the others (replay's
    memory groups) from `memory`."""
    def create(datasets, batch_sizes, distributed_sampling, loader_kwargs):
        return [avalanche_loaders._make_sampler(d, distributed_sampling,
                                                loader_kwargs | {"generator": order if i == 0 else memory}, b)
                for i, (d, b) in enumerate(zip(datasets, batch_sizes, strict=True))]
    return create


def seed_loader(loader, order: torch.Generator, memory: torch.Generator) -> bool:
    """Make `loader` draw its order from `order` (its own data) and `memory` (any memory it mixes in). → False
    when it is a kind of loader this does not know (it then draws from the global generator, reseeded per
    experience: still reproducible, but not paired)."""
    loader = getattr(loader, "loader", loader)  # benchmark/harness/fast_batches.py's wrappers keep the original
    if isinstance(loader, avalanche_loaders.MultiDatasetDataLoader):
        loader.loader_kwargs["generator"] = order  # the torch DataLoader's seed draw, once per epoch
        loader._create_samplers = _seeded_samplers(order, memory)
        return True
    if isinstance(loader, DataLoader):
        loader.generator = order
        sampler = loader.batch_sampler if loader.batch_sampler is not None else loader.sampler
        sampler = getattr(sampler, "sampler", sampler)  # a BatchSampler's RandomSampler
        if isinstance(sampler, RandomSampler) or hasattr(sampler, "generator"):
            sampler.generator = order
            return True
    return False


class PairedRandomness(Stateful, SupervisedPlugin):
    """The harness's first plugin: sets `strategy.run_seed` (for `own_generator`), reseeds the global generator and
    the data-order generator at the start of every training call, and installs the latter on the training loader
    before every epoch (after a strategy such as replay has replaced the loader). `unpaired`: the loaders it could
    not seed, by type name, each said once through `log` (none of the registered strategies has one)."""

    state_attrs = ("trainings", "unpaired")
    rebuilt_attrs = ("seed", "order", "log")  # order: seeded anew at every training call

    def __init__(self, seed: int, log=print):
        super().__init__()
        self.seed, self.trainings, self.order, self.unpaired, self.log = seed, 0, None, [], log

    def before_training(self, strategy, **kwargs):
        strategy.run_seed = self.seed

    def before_train_dataset_adaptation(self, strategy, **kwargs):
        torch.manual_seed(derived_seed(self.seed, "global", self.trainings))
        self.order = torch.Generator().manual_seed(derived_seed(self.seed, "data order", self.trainings))
        self.trainings += 1

    def before_training_epoch(self, strategy, **kwargs):
        if not seed_loader(strategy.dataloader, self.order, own_generator(strategy, "memory order")):
            name = type(getattr(strategy.dataloader, "loader", strategy.dataloader)).__name__
            if name not in self.unpaired:
                self.unpaired.append(name)
                self.log(f"training loader {name} not seeded by the harness: its order comes from the global "
                         f"generator (reproducible, not paired with other strategies' runs)")
