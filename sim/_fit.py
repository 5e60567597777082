"""Fit the simulator's parametric source models to recorded traces."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise
from pathlib import Path

import numpy as np

from ._models import ChainModel, RecycledModel, SimulationModel
from ._replay import load_trace

__all__ = ["fit_traces"]


def fit_traces(paths: Sequence[str | Path], context: str = "context", recycled: str = "recycled",
               ranks: int = 8, min_trials: int = 20) -> SimulationModel:
    """A :class:`SimulationModel` whose parameters are the frequencies seen at the
    root of every recorded step (``goose generate --trace``):

    * ``match_prob``: steps where the context source proposed anything;
    * ``alpha``: its first chain token equals the next committed token; ``decay``:
      the mean ratio of consecutive depth acceptances ``alpha_{d+1} / alpha_d``
      over depths with at least ``min_trials`` trials;
    * ``betas[j]``: the recycled rank-j token equals the next committed token,
      scaled down together if ``alpha + sum(betas)`` exceeds 1 (the model's sibling
      exclusivity); ``overlap``: rank 0 equals the chain's first token.

    A source that never proposed anything in the traces is left out of the model.
    """
    if not paths:
        raise ValueError("no traces to fit")
    steps_n = matched = both = overlap = 0
    trials, hits = np.zeros(33), np.zeros(33)
    rank_hits, rank_steps = np.zeros(ranks), 0
    for path in paths:
        _, steps = load_trace(path)
        for s in steps:
            ref = s["reference"]
            if not ref:
                continue
            steps_n += 1
            roots = {src: [q for q in qs if q["depth"] == 0] for src, qs in s["proposals"].items()}
            chain = next((t for q in roots.get(context, []) for t in q["tokens"] if t), None)
            cands = [t[0] for q in roots.get(recycled, []) for t in q["tokens"] if t][:ranks]
            if chain:
                matched += 1
                for d, tok in enumerate(chain[: len(ref)], 1):
                    trials[d] += 1
                    if tok != ref[d - 1]:
                        break
                    hits[d] += 1
            if cands:
                rank_steps += 1
                for j, tok in enumerate(cands):
                    rank_hits[j] += tok == ref[0]
                if chain:
                    both += 1
                    overlap += cands[0] == chain[0]
    if steps_n == 0:
        raise ValueError("the traces hold no steps")
    chain_model = None
    if matched and trials[1]:
        alpha = hits[1] / trials[1]
        rates = [hits[d] / trials[d] for d in range(1, 33) if trials[d] >= min_trials]
        ratios = [b / a for a, b in pairwise(rates) if a > 0]
        decay = float(np.clip(np.mean(ratios), 0.0, 1.0)) if ratios else 1.0
        chain_model = ChainModel(float(alpha), decay=decay, match_prob=matched / steps_n)
    rec_model = None
    if rank_steps:
        betas = np.minimum.accumulate(rank_hits / rank_steps)  # non-increasing by rank
        room = 1.0 - (chain_model.alpha if chain_model else 0.0)
        if betas.sum() > room:
            betas *= room / betas.sum()
        rec_model = RecycledModel(tuple(float(b) for b in betas), overlap=overlap / both if both else 0.0)
    return SimulationModel(chain_model, rec_model)
