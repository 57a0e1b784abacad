"""CODA-Prompt (Smith et al., CVPR 2023): a prompt assembled from a pool of components by attention on the query.

The frozen backbone's [CLS] feature q (B×D, the backbone's own forward: no prompt, no gradient) weighs M prompt
components at each prompt layer l. With components P_m (L_p×D), keys K_m (D) and attention vectors A_m (D):

    α_m = cos(q ⊙ A_m, K_m)                  (B×M: the query masked by A_m, compared with K_m)
    p   = Σ_m α_m P_m                        (B×L_p×D)
    prefix-tuning at layer l: the first L_p/2 rows of p are extra attention keys, the last L_p/2 extra values
    (benchmark/models/prompting.py); the classifier reads the prompted forward's [CLS] feature.

Components are split between tasks: task t owns the slice [t·M/T, (t+1)·M/T) of every layer's P, K and A, trains it
only, and uses the earlier slices as they are (detached, as the authors' `CodaPrompt.forward` does; here they are
also parameters that no longer require gradients, so no optimizer state can move them). At the start of task t its
slice is initialised by Gram–Schmidt: standard normal draws, each made orthogonal to the rows before it and unit
length (the authors' `gram_schmidt`, called from `process_task_count`). After training the earlier rows are no longer
orthonormal, and the authors' sum of projections onto each of them then leaves the new rows only near-orthogonal;
here each draw is projected out of an orthonormal basis of the earlier rows' span (twice, in float64), so the new
slice is orthogonal to them, as the authors' is at the start. Evaluation after task t uses the slices 0..t.

    loss = CE + μ · Σ_l [ ‖K Kᵀ − I‖² + ‖A Aᵀ − I‖² + ‖P̃ P̃ᵀ − I‖² ]      (means over the entries; P̃: M×(L_p·D);
                                                                          the slices 0..t, earlier ones detached)

the authors' `ortho_penalty` ("ortho_mu", the third prompt parameter), in the training forward only.

Defaults, from the authors' repository (GT-RIPL/CODA-Prompt at 6417d4f, `experiments/*.sh`: `--prompt_param 100 8
0.0` for CIFAR-100, ImageNet-R short/long and DomainNet alike; PILOT's exps/coda_prompt.json the same): length
L_p = 8 and μ = 0 (their README: with the Gram–Schmidt init the penalty can be 0; their beta release used 0.1 on
CIFAR-100). The pool: M = 100 on ViT-B (D = 768), but Gram–Schmidt fits at most D orthogonal keys, so the default
(`pool_size` 0) is M = min(100, D): 64 on vit_tiny (12 a task on the 5 experiences of Split Fashion-MNIST, against
the authors' 10 a task on 10-task CIFAR-100), 100 on a DINO ViT-S. Layers: the authors prompt blocks 0–4 of ViT-B's
12; block i of 12 maps to ⌊i·d/12 + ½⌋ of a d-block ViT, as DualPrompt's layers do: blocks 0 and 1 of the 4-block
vit_tiny, 0–4 of a 12-block ViT.

Harness choices, stated: T is the stream's number of experiences, read before the first trains (the authors pass
their split's task count); each row of P, K and A is its own parameter, so that a finished task's rows can stop
requiring gradients; before the first experience no task has started and the features are the backbone's own (the
authors' evaluation would use the first slice's random components); the classifier is the network's shared layers
and heads (`--hidden ""`: the authors' one linear layer), trained with the run's optimizer (theirs: Adam, lr 1e-3,
cosine); class-IL trains with the shared network's mask (only the current experience's classes compete: the
authors' −inf on past logits, future ones cut).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from avalanche.core import SupervisedPlugin
from torch import nn

from benchmark.errors import UserError
from benchmark.models.backbone import ViTBackbone
from benchmark.models.prompting import forward_with_prefixes
from benchmark.registry import STRATEGIES
from benchmark.runtime.state import Stateful
from strategies.common.prompting import Prompter, prompt_backbone, prompt_generator, prompt_template
from strategies.dualprompt import backbone_layers

PAPER_LAYERS, PAPER_DEPTH, PAPER_POOL = (0, 1, 2, 3, 4), 12, 100  # the authors' `e_layers` of ViT-B/16; their M


@dataclass(frozen=True)
class CodaPromptConfig:
    pool_size: int = 0  # M components per prompt layer, split between the tasks; 0: min(100, D) (module docstring)
    length: int = 8  # L_p: prompt rows per component, half keys, half values (the authors' 8)
    ortho_mu: float = 0.0  # μ: weight of the orthogonality penalty (the authors' final configs: 0.0)
    train_mask: bool = True  # class-IL training: only the current experience's classes compete (the authors' mask)

    def __post_init__(self):
        if self.pool_size < 0 or self.length < 2 or self.length % 2 or self.ortho_mu < 0:
            raise UserError(f"--coda_prompt.pool-size must be ≥ 0 (0: min(100, D)), --coda_prompt.length even and ≥ 2 "
                            f"(half keys, half values) and --coda_prompt.ortho-mu ≥ 0 (got {self.pool_size}, "
                            f"{self.length}, {self.ortho_mu})")


def prompt_layers(depth: int) -> list[int]:
    """The blocks prompted in a ViT of `depth` blocks: the authors' blocks 0–4 of 12, mapped as DualPrompt's are."""
    return backbone_layers(PAPER_LAYERS, PAPER_DEPTH, depth)


def orthogonal_rows(earlier: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
    """n unit rows (n×d), orthogonal to each other and to every row of `earlier` (s×d): standard normal draws from
    `generator`, each projected out of an orthonormal basis of the rows before it (Gram–Schmidt, twice for float
    round-off), a draw that lies in their span drawn again (the authors' "restarting")."""
    d = earlier.shape[1]
    basis = torch.zeros(0, d, dtype=torch.float64)
    for row in earlier.detach().to(torch.float64).cpu():  # the earlier rows' span (trained rows: not orthonormal)
        basis = _extend(basis, row)
    if basis.shape[0] + n > d:
        raise UserError(f"CODA-Prompt: {basis.shape[0] + n} components cannot be orthogonal in {d} dimensions; pass "
                        f"a smaller --coda_prompt.pool-size (at most the backbone's feature width)")
    rows = []
    while len(rows) < n:
        grown = _extend(basis, torch.randn(d, generator=generator, dtype=torch.float64))
        if grown.shape[0] > basis.shape[0]:
            basis = grown
            rows.append(grown[-1])
    return torch.stack(rows).to(earlier.dtype)


def _extend(basis: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """basis (k×d orthonormal) with v's component outside its span appended, unit length; unchanged if v lies in it."""
    scale = v.norm()
    for _ in range(2):
        v = v - basis.T @ (basis @ v)
    if v.norm() <= 1e-8 * max(float(scale), 1e-300):
        return basis
    return torch.cat([basis, (v / v.norm())[None]])


def component_weights(q: torch.Tensor, keys: torch.Tensor, attention: torch.Tensor) -> torch.Tensor:
    """α = cos(q ⊙ A_m, K_m): q B×D, keys and attention M×D → B×M (the authors' einsum, F.normalize's ε)."""
    attended = F.normalize(q[:, None, :] * attention[None], dim=2)
    return torch.einsum("bmd,md->bm", attended, F.normalize(keys, dim=1))


def ortho_penalty(t: torch.Tensor) -> torch.Tensor:
    """mean((T Tᵀ − I)²) over T's rows (flattened): 0 for orthonormal rows."""
    t = t.flatten(1)
    return ((t @ t.T - torch.eye(t.shape[0], dtype=t.dtype, device=t.device)) ** 2).mean()


class CodaLayer(nn.Module):
    """One prompt layer's M components (L_p×D), keys (D) and attention vectors (D): one parameter per row, so that a
    task's rows can stop requiring gradients while the next task's train (zeros until their task starts)."""

    def __init__(self, pool: int, length: int, dim: int):
        super().__init__()
        self.P = nn.ParameterList(torch.zeros(length, dim) for _ in range(pool))
        self.K = nn.ParameterList(torch.zeros(dim) for _ in range(pool))
        self.A = nn.ParameterList(torch.zeros(dim) for _ in range(pool))

    def rows(self, start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(P, K, A) of rows 0..stop−1, those before `start` detached (the earlier tasks'): M'×L_p×D, M'×D, M'×D."""
        def stack(params):
            return torch.stack([params[m].detach() if m < start else params[m] for m in range(stop)])
        return stack(self.P), stack(self.K), stack(self.A)

    @torch.no_grad()
    def start(self, start: int, stop: int, generator: torch.Generator) -> None:
        """Rows start..stop−1 initialised by Gram–Schmidt against rows 0..start−1, which stop requiring gradients."""
        for params in (self.P, self.K, self.A):
            earlier = torch.stack([params[m].flatten() for m in range(start)]) if start else \
                params[0].new_zeros(0, params[0].numel())
            fresh = orthogonal_rows(earlier, stop - start, generator)
            for m in range(start, stop):
                params[m].copy_(fresh[m - start].reshape(params[m].shape))
            for m in range(start):
                params[m].requires_grad_(False)


class CodaPrompts(Prompter):
    """Every prompt layer's components (`CodaLayer`) and the prompted forward (module docstring). `n_tasks` (T, the
    stream's experiences) is set before the first experience trains; `task`: the latest started, None before."""

    def __init__(self, cfg: CodaPromptConfig, vit: ViTBackbone, generator: torch.Generator):
        super().__init__()
        dim = vit.num_features
        self.pool = cfg.pool_size or min(PAPER_POOL, dim)
        if self.pool > dim:
            raise UserError(f"--coda_prompt.pool-size {self.pool}: more keys than can be orthogonal in the backbone's "
                            f"{dim} dimensions; pass at most {dim} (or 0: min(100, D))")
        self.cfg, self.layers, self.generator = cfg, prompt_layers(len(vit.blocks)), generator
        self.components = nn.ModuleDict({str(b): CodaLayer(self.pool, cfg.length, dim) for b in self.layers})
        # (T, the latest task started): in the state_dict, so a saved model (--save-model) prompts as it was trained
        self.register_buffer("progress", torch.tensor([0, -1]))

    @property
    def n_tasks(self) -> int | None:
        return int(self.progress[0]) or None

    @n_tasks.setter
    def n_tasks(self, value: int) -> None:
        self.progress[0] = value

    @property
    def task(self) -> int | None:
        task = int(self.progress[1])
        return None if task < 0 else task

    def per_task(self) -> int:
        return self.pool // self.n_tasks

    def checkpoint_state(self) -> dict:
        """What a checkpoint keeps beyond the state_dict (benchmark/harness/checkpoint.py): the generator that draws
        each task's new rows at its start."""
        return {"generator": self.generator}

    def load_checkpoint_state(self, state: dict) -> None:
        self.generator.set_state(state["generator"].get_state())

    def start_task(self, task: int) -> None:
        """Experience `task` begins: its rows initialised (Gram–Schmidt), the earlier tasks' frozen."""
        if self.n_tasks is None or task >= self.n_tasks:
            raise UserError(f"CODA-Prompt splits its components between the stream's {self.n_tasks} experiences "
                            f"(set before the first trains); experience {task} is not one of them")
        if self.per_task() < 1:
            raise UserError(f"--coda_prompt.pool-size {self.pool} gives no component to each of the stream's "
                            f"{self.n_tasks} experiences; pass at least {self.n_tasks}")
        if task == self.task:
            return
        self.progress[1], k = task, self.per_task()
        for layer in self.components.values():
            layer.start(task * k, (task + 1) * k, self.generator)

    def prefixes(self, q: torch.Tensor) -> dict[int, torch.Tensor]:
        """{block: B×2×(L_p/2)×D}: p = Σ_m α_m P_m over the started tasks' rows, its halves the keys and the values;
        {} before the first task starts (no component yet: the backbone's own forward)."""
        if self.task is None:
            return {}
        k, out = self.per_task(), {}
        for block in self.layers:
            P, K, A = self.components[str(block)].rows(self.task * k, (self.task + 1) * k)
            prompt = torch.einsum("bm,mld->bld", component_weights(q, K.to(q.dtype), A.to(q.dtype)), P.to(q.dtype))
            out[block] = prompt.unflatten(1, (2, -1))
        return out

    def ortho_loss(self) -> torch.Tensor:
        """μ · Σ_l (the penalty of K, A and the flattened P over the started tasks' rows, earlier ones detached)."""
        k = self.per_task()
        terms = [ortho_penalty(t) for layer in self.components.values()
                 for t in layer.rows(self.task * k, (self.task + 1) * k)]
        return self.cfg.ortho_mu * torch.stack(terms).sum()

    def prompted(self, backbone, x, query, task):
        feats = forward_with_prefixes(backbone, x, self.prefixes(query))[:, 0]  # the class token, as the authors'
        train = task is not None and self.cfg.ortho_mu > 0
        return feats, self.ortho_loss() if train else None


class StreamLength(Stateful, SupervisedPlugin):
    """Tells the prompter the stream's number of experiences (T, the authors' `n_tasks`) before the first trains."""

    def before_training_exp(self, strategy, **kwargs):
        prompter = strategy.model.prompter
        if prompter.n_tasks is None:
            prompter.n_tasks = len(strategy.experience.origin_stream)


@STRATEGIES.register("coda_prompt", config_cls=CodaPromptConfig, prompts_backbone=True, ptm=True)
def build_coda_prompt(cfg: CodaPromptConfig | None = None, plugins=(), *, model, optimizer, **template_kwargs):
    cfg = cfg or CodaPromptConfig()
    vit = prompt_backbone(model, "--strategy coda_prompt")
    return prompt_template(CodaPrompts(cfg, vit, prompt_generator("coda_prompt")), "--strategy coda_prompt",
                           [*plugins, StreamLength()], model, optimizer, train_mask=cfg.train_mask, **template_kwargs)
