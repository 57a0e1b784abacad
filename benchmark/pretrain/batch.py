"""A continual profile's "pretrain" section in `hatswap batch`: the profile's backbone is pretrained first (a cache
hit once done) and every run of the batch loads those weights. Registered with the grid runner here, so that the grid
never imports this package; benchmark/cli.py, the composition root, loads this module."""

from __future__ import annotations

from pathlib import Path

from benchmark.grid.batch import register_weights_step


def pretrained_weights(profile_name: str, run_cfg) -> Path:
    """The weights file of the profile's pretraining, run where the batch's runs read and write (`run_cfg`)."""
    from benchmark.pretrain.pipeline import pretrain_for_run  # torch and the training: only when a profile pretrains

    return pretrain_for_run(profile_name, run_cfg)


register_weights_step("pretrain", pretrained_weights)
