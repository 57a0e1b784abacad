"""Naive sequential fine-tuning: train on each experience in turn, nothing against forgetting (the lower bound)."""

from benchmark.registry import STRATEGIES


@STRATEGIES.register_plugins("naive")
def naive_plugins(cfg, template_kwargs: dict) -> list:
    return []  # the template alone
