"""DualPrompt (Wang et al., ECCV 2022): a shared G(eneral)-prompt at the first blocks of a frozen pretrained ViT and
one E(xpert)-prompt per task at later blocks, both prefix-tuned; the E-prompt is the task's in training and the one
whose key best matches the query at test. Only the prompts, the E-keys and the classifier train.

    G-prompt   g_l ∈ R^{2×L_g×D} for each block l ∈ G (key and value prefixes), shared by every task
    E-prompts  e_{m,l} ∈ R^{2×L_e×D} for each block l ∈ E and m < M, with a key k_m ∈ R^D
    query      q(x) = the frozen ViT's class token without prompts (strategies/common/prompting.py), no gradient
    choice     training on experience t: m = t (the task identity, their `use_prompt_mask`);
               evaluation: m(x) = argmax_m cos(q(x), k_m)
    forward    block l runs with prefixes g_l (l ∈ G) and e_{m,l} (l ∈ E) prepended to its attention's keys and
               values (benchmark/models/prompting.py `forward_with_prefixes`); features = the class token's output
               (their `head_type='token'`), read by the shared layers and heads
    loss       CE + λ · (1/B) Σ_b (1 − cos(q(x_b), k_m))                     (their `pull_constraint`, λ = 1)

Source and defaults: the authors' PyTorch port, JH-LEE-KR/dualprompt-pytorch (prompt.py's EPrompt,
vision_transformer.py, configs/cifar100_dualprompt.py): L_g = L_e = 5, M = 10 (the pool; at least the number of
experiences), top-1 E-prompt, λ = 1.0 (`pull_constraint_coeff`), prefix-tuning for both
(`use_prefix_tune_for_g_prompt`, `use_prefix_tune_for_e_prompt`), separate key and value prefixes
(`same_key_value` False), prompts and keys uniform on [−1, 1], class-IL `train_mask`; before task t > 0 the E-prompt
of task t − 1 is copied into task t's (their engine.py with `shared_prompt_pool` True; `--no-dualprompt.transfer`:
a fresh draw), the keys not (`shared_prompt_key` False); a fresh optimizer state at every task (their
`reinit_optimizer` True; strategies/common/prompting.py).

The layers. Theirs are ViT-B's (12 blocks): G = {0, 1}, E = {2, 3, 4}. `--dualprompt.g-layers` and `--dualprompt.e-
layers` take indices of a ViT of `--dualprompt.layers-of` blocks (12), mapped to the backbone's d blocks by
l ↦ min(d − 1, ⌊l·d/12 + ½⌋): on the 4-block vit_tiny (the committed DINO weights) G = {0}, E = {1} — the same
shares of the depth (a sixth and a quarter, rounded to whole blocks); on the smoke profile's 1-block ViT both are
block 0, whose prefix is then the G-prompt followed by the E-prompt. `--dualprompt.layers-of 0`: the indices are the
backbone's own.

Choices, stated: evaluation picks each image's E-prompt alone (their `batchwise_prompt` would let the batch vote at
test); the optimizer and lr are the run's (theirs: Adam, lr 0.005 scaled by batch/256 in main.py, clipping 1.0); task-IL
uses the same key match
at test (the published method's inference), each task's head reading the features.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from benchmark.errors import UserError
from benchmark.models.backbone import ViTBackbone
from benchmark.models.prompting import forward_with_prefixes
from benchmark.registry import STRATEGIES
from benchmark.tuning.space import LogUniform, searchable
from strategies.common.prompting import Prompter, prompt_backbone, prompt_generator, prompt_template
from strategies.l2p import key_similarity


@dataclass(frozen=True)
class DualPromptConfig:
    g_length: int = 5  # L_g: G-prompt prefix length (`g_prompt_length`)
    e_length: int = 5  # L_e: E-prompt prefix length (`length`)
    pool_size: int = 10  # M E-prompts, one per experience (`size`)
    g_layers: tuple[int, ...] = (0, 1)  # `g_prompt_layer_idx`, blocks of a `layers_of`-block ViT
    e_layers: tuple[int, ...] = (2, 3, 4)  # `e_prompt_layer_idx`
    layers_of: int = 12  # the depth those indices refer to (ViT-B's); 0: the backbone's own indices
    pull_coeff: float = field(default=1.0, metadata=searchable(LogUniform(  # λ of the surrogate key loss
        0.1, 10.0, source="dualprompt-pytorch's pull_constraint_coeff 1.0")))
    train_mask: bool = True  # class-IL training: only the current experience's classes compete (`train_mask`)
    # each new task's E-prompt starts as the previous task's trained one (their `shared_prompt_pool`, default True;
    # the keys are not copied: `shared_prompt_key` False)
    transfer: bool = True

    def __post_init__(self):
        if min(self.g_length, self.e_length, self.pool_size) < 1 or self.layers_of < 0:
            raise UserError(f"--dualprompt.g-length, --dualprompt.e-length and --dualprompt.pool-size must be ≥ 1 and "
                            f"--dualprompt.layers-of ≥ 0 (got {self.g_length}, {self.e_length}, {self.pool_size}, "
                            f"{self.layers_of})")
        if self.pull_coeff < 0 or any(i < 0 for i in (*self.g_layers, *self.e_layers)):
            raise UserError(f"--dualprompt.pull-coeff and the layer indices must be ≥ 0 (got {self.pull_coeff}, "
                            f"{self.g_layers}, {self.e_layers})")


def backbone_layers(layers: tuple[int, ...], layers_of: int, depth: int) -> list[int]:
    """Block indices of a `layers_of`-block ViT mapped to a `depth`-block one (module docstring); 0: as given."""
    if layers_of == 0:
        if bad := [i for i in layers if i >= depth]:
            raise UserError(f"--dualprompt layers {bad} are outside the backbone's {depth} blocks")
        return sorted(set(layers))
    return sorted({min(depth - 1, int(i * depth / layers_of + 0.5)) for i in layers})


class DualPrompts(Prompter):
    """The G-prompt, the E-prompt pool and its keys (module docstring), drawn from `generator`."""

    def __init__(self, cfg: DualPromptConfig, vit: ViTBackbone, generator: torch.Generator):
        super().__init__()
        depth, dim = len(vit.blocks), vit.num_features
        self.cfg = cfg
        self.g_layers = backbone_layers(cfg.g_layers, cfg.layers_of, depth)
        self.e_layers = backbone_layers(cfg.e_layers, cfg.layers_of, depth)

        def uniform(*shape):  # their prompt.py: nn.init.uniform_(…, -1, 1)
            return nn.Parameter(2 * torch.rand(*shape, generator=generator) - 1)

        self.g_prompt = uniform(len(self.g_layers), 2, cfg.g_length, dim)
        self.e_prompt = uniform(cfg.pool_size, len(self.e_layers), 2, cfg.e_length, dim)
        self.keys = uniform(cfg.pool_size, dim)
        self.last_idx: torch.Tensor | None = None  # the latest E-prompt choice, B

    def start_task(self, task: int) -> None:
        if task >= self.cfg.pool_size:
            raise UserError(f"--strategy dualprompt keeps one E-prompt per experience: experience {task} needs "
                            f"--dualprompt.pool-size ≥ {task + 1} (got {self.cfg.pool_size})")
        if task > 0 and self.cfg.transfer:  # their engine.py with shared_prompt_pool: prompt[cur] = prompt[prev]
            with torch.no_grad():
                self.e_prompt[task].copy_(self.e_prompt[task - 1])

    def choose(self, query: torch.Tensor, task: int | None) -> tuple[torch.Tensor, torch.Tensor]:
        """→ (B E-prompt indices: the task's in training, the best key's at evaluation; B×M similarities)."""
        similarity = key_similarity(query, self.keys.to(query.dtype))
        if task is not None:
            return torch.full((query.shape[0],), task, dtype=torch.long, device=query.device), similarity
        return similarity.argmax(dim=1), similarity

    def prefixes(self, idx: torch.Tensor, batch: int) -> dict[int, torch.Tensor]:
        """{block: B×2×L×D}: the G-prompt's (broadcast) and the chosen E-prompt's, G first where a block has both."""
        parts: dict[int, list[torch.Tensor]] = {}
        for j, layer in enumerate(self.g_layers):
            parts.setdefault(layer, []).append(self.g_prompt[j].expand(batch, -1, -1, -1))
        chosen = self.e_prompt[idx]  # B×|E|×2×L_e×D
        for j, layer in enumerate(self.e_layers):
            parts.setdefault(layer, []).append(chosen[:, j])
        return {layer: torch.cat(p, dim=2) for layer, p in parts.items()}

    def prompted(self, backbone, x, query, task):
        idx, similarity = self.choose(query, task)
        self.last_idx = idx
        tokens = forward_with_prefixes(backbone, x, self.prefixes(idx, x.shape[0]))
        pull = (1 - similarity.gather(1, idx[:, None])).sum() / idx.shape[0]
        return tokens[:, 0], self.cfg.pull_coeff * pull


@STRATEGIES.register("dualprompt", config_cls=DualPromptConfig, prompts_backbone=True, ptm=True)
def build_dualprompt(cfg: DualPromptConfig | None = None, plugins=(), *, model, optimizer, **template_kwargs):
    cfg = cfg or DualPromptConfig()
    vit = prompt_backbone(model, "--strategy dualprompt")
    return prompt_template(DualPrompts(cfg, vit, prompt_generator("dualprompt")), "--strategy dualprompt", plugins,
                           model, optimizer, train_mask=cfg.train_mask, **template_kwargs)
