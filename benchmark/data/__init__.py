"""Image sources (registry `SOURCES`): real torchvision dataset classes, found locally first, downloaded last; and
the data API every consumer of them uses (loading.py: `load_source`, `materialize_images`, `stratified_subsample`)."""

from benchmark.data import cifar10, cifar100, fashion_mnist  # noqa: F401  (registration)
from benchmark.data.source import SourceData  # noqa: F401
