"""Naive sequential fine-tuning: train on each experience in turn, nothing against forgetting (the lower bound)."""

from avalanche.training.templates import SupervisedTemplate

from benchmark.registry import STRATEGIES


@STRATEGIES.register("naive", plugins=lambda cfg, template_kwargs: [])
def build_naive(cfg=None, plugins=(), **template_kwargs) -> SupervisedTemplate:
    return SupervisedTemplate(plugins=list(plugins), **template_kwargs)
