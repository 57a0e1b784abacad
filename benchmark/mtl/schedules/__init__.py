"""Training schedules (registry `SCHEDULES`): which tasks train when. Each returns a list of `Stage`s."""

from benchmark.mtl.schedules import alternating, curriculum, joint, sequential  # noqa: F401
