"""The continual hyperparameter protocol (`hatswap tune --protocol continual`): Delange et al. 2021's framework, as
FACIL implements it (src/gridsearch.py, src/gridsearch_config.py). Searching once over every task's validation data
assumes a learner that sees its future tasks; this one sees one task at a time.

For each experience k, from the model the chosen values trained on experiences 0…k−1:
1. Maximal plasticity: train experience k with the stability knob off (0: EWC, SI, MAS, LwF and DER without their
   penalty are fine-tuning, FACIL's reference) at each candidate learning rate; the best accuracy on experience k's
   validation data is A*_k, its learning rate is k's. Candidates: FACIL's lists scaled by 1/50 for Adam (its
   smallest first-task SGD lr, 5e-2, ↦ hatswap's default 1e-3): the first experience tries LR_FIRST; later ones the
   three largest of LR below the first experience's choice.
2. Stability decay: from the knob's start (FACIL's: EWC 1e4, MAS 400, SI 10, LwF 10), train experience k with
   the strategy; while its accuracy on experience k's validation data is below (1 − 0.2)·A*_k, halve the knob (at
   most 7 tries; exhausted, the 7th halving is kept, as FACIL does; never below the declared range). The first
   experience has no past to keep: it keeps the start value. Only a knob whose 0 is fine-tuning qualifies (DER's α
   with β's label replay, GEM's margin are not): those strategies are refused. A strategy without a stability
   knob (naive, replay, A-GEM) gets step 1 alone, its learning rate chosen on the strategy itself.
The values are per experience; the record's best arguments are lists, one value per experience, which `--tuned`
applies experience by experience (ExperienceKnobs). Every candidate is the stream's prefix re-run from the start
with the chosen values (paired randomness makes it the same model as a snapshot would be), so the protocol costs
about (3 + tries) prefixes per experience."""

from __future__ import annotations

import time

from benchmark.errors import UserError
from benchmark.outputs.results import git_state
from benchmark.tuning.experience_knobs import ExperienceKnobs
from benchmark.tuning.record import record_path, write_record
from benchmark.tuning.search import Tuning, claim_folder, say, stream_length
from benchmark.tuning.space import search_space, stability_knob
from benchmark.tuning.trial import StopTrial, run_trial

LR_FIRST = (1e-2, 2e-3, 1e-3)  # FACIL: 5e-1, 1e-1, 5e-2 (SGD), ×1/50
LR = (2e-3, 1e-3, 2e-4, 1e-4, 2e-5)  # FACIL: 1e-1, 5e-2, 1e-2, 5e-3, 1e-3, ×1/50
LR_SEARCHES, ACC_DROP, DECAY, MAX_SEARCHES = 3, 0.2, 0.5, 7  # FACIL's GridSearch defaults
FACIL_START = {"ewc.ewc_lambda": 1e4, "mas.mas_lambda": 400.0, "si.c": 10.0, "lwf.alpha": 10.0}


def prefix_score(t: Tuning, schedule: list[dict], k: int, horizon: int, tag: str, final: bool = False) -> float:
    """Train experiences 0…k with schedule[0…k]; → accuracy on experience k's validation data after k (final: the
    whole stream's validation ACC)."""
    rows: list[list[float]] = []

    def report(n, score, row):
        rows.append(row)
        if n == k + 1 and k + 1 < horizon:
            raise StopTrial(n)

    knobs = ExperienceKnobs(schedule)
    argv = t.argv({}, t.folder / "continual" / tag)
    try:
        result = run_trial(argv, report, "acc", horizon, extra_plugins=[knobs])
    except StopTrial:
        result = None
    return result["score"] if final else rows[k][k]


def stability_search(t: Tuning, chosen: list[dict], k: int, horizon: int, knob: str, dist, lr: float,
                     a_star: float) -> tuple[float, list[dict]]:
    """FACIL's search_tradeoff: from the start value, train experience k; below (1 − ACC_DROP)·A* halve and try
    again, at most MAX_SEARCHES tries (exhausted: the last halving is kept, untried, as FACIL does); the first
    experience has no past to trade against and keeps the start value untried. → (value, the tries)."""
    value, tries = FACIL_START[knob], []
    if k == 0:
        return value, tries
    for _ in range(MAX_SEARCHES):
        acc = prefix_score(t, [*chosen, {"lr": lr, knob: value}], k, horizon, f"exp{k}-{knob}-{value:g}")
        tries.append({"value": value, "acc": acc})
        say(f"experience {k}: {knob} {value:g} → {acc:.4f} (needs ≥ {(1 - ACC_DROP) * a_star:.4f})")
        if acc >= (1 - ACC_DROP) * a_star:
            return value, tries
        if (smaller := dist.decayed(value, DECAY)) is None:  # the declared range's floor: keep the last tried
            return value, tries
        value = smaller
    return value, tries


def tune_continual(t: Tuning):
    from benchmark.registry import STRATEGIES

    space = search_space(t.strategy)
    knob = stability_knob(space)
    if STRATEGIES.get(t.strategy).meta.one_shot:
        raise UserError(f"--protocol continual tunes experience by experience; --strategy {t.strategy} trains once "
                        f"on the whole stream: use --protocol joint")
    if knob and knob not in FACIL_START:
        raise UserError(f"--protocol continual needs a stability knob whose 0 is fine-tuning (EWC's, SI's, MAS's, "
                        f"LwF's); {knob} is not: tune --strategy {t.strategy} with --protocol joint")
    horizon, _ = stream_length(t)  # bad flags fail before the folder is claimed
    claim_folder(t, space, protocol="continual")
    say(f"{t.strategy} on profile {t.profile} ({t.stream}, validation split, seed {t.seed}): continual protocol "
        f"(Delange et al. 2021, FACIL), stability knob {knob or 'none (learning rate only)'}; folder {t.folder}")
    t0, chosen, log = time.perf_counter(), [], []
    first_lr = None
    for k in range(horizon):
        lrs = LR_FIRST if k == 0 else [lr for lr in LR if lr < first_lr][:LR_SEARCHES] or [min(LR)]
        plastic = {}
        for lr in lrs:
            values = {"lr": lr} | ({knob: 0.0} if knob else {})
            plastic[lr] = prefix_score(t, [*chosen, values], k, horizon, f"exp{k}-plastic-lr{lr:g}")
            say(f"experience {k}: fine-tuning at lr {lr:g} → {plastic[lr]:.4f}")
        lr_k = max(plastic, key=plastic.get)
        first_lr = first_lr or lr_k
        values, tries = {"lr": lr_k}, []
        if knob:
            values[knob], tries = stability_search(t, chosen, k, horizon, knob, space[knob], lr_k, plastic[lr_k])
        chosen.append(values)
        log.append({"experience": k, "plastic": {f"{lr:g}": a for lr, a in plastic.items()}, "a_star": plastic[lr_k],
                    "lr": lr_k, "stability": tries, "chosen": values})
    final = prefix_score(t, chosen, horizon - 1, horizon, "final", final=True)
    record = {
        "profile": t.profile, "strategy": t.strategy, "stream": t.stream, "eval_split": "val",
        "protocol": "continual (Delange et al. 2021, as FACIL's gridsearch: per experience, its validation data only)",
        "seed": t.seed, "best": {"params": {k: [c.get(k) for c in chosen] for k in chosen[0]},
                                 "score": final, "per_experience": True},
        "space": {k: d.describe() for k, d in space.items() if k in chosen[0]},
        "searcher": {"name": "FACIL grid search", "lr_first": LR_FIRST, "lr": LR, "lr_searches": LR_SEARCHES,
                     "acc_drop_threshold": ACC_DROP, "decay": DECAY, "max_searches": MAX_SEARCHES,
                     "start": FACIL_START.get(knob) if knob else None},
        "experiences": log, "run_args": t.run_args, "git": git_state(),
        "wall_s_last_session": time.perf_counter() - t0,
    }
    path = record_path(t.profile, f"{t.strategy}.continual", t.record_dir)
    write_record(path, record | {"strategy": t.strategy})
    say(f"chosen per experience: {chosen}; validation score {final:.4f} → {path}")
    return path
