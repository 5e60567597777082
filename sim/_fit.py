"""Fit the simulator's parametric source models to recorded traces."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import replace
from itertools import pairwise
from pathlib import Path

import numpy as np

from ._counting import (
    DEPTHS,
    MAX_CHAIN,
    Counts,
    query_row,
    ranked_queries,
    recycled_queries,
    shrink,
    sub_one,
)
from ._models import PLACES, ROW_CLASSES, WIDE, ChainModel, RecycledModel, RegimeModel, SimulationModel
from ._replay import load_trace

__all__ = ["fit_model", "fit_traces"]

ROW_STRENGTH = 2.0
"""Pseudo-trials a row class's rank acceptances are shrunk towards its place's with. The
classes split a place's nodes four ways, a few dozen nodes each on one prompt: at the
``strength`` of the other rates (10), held-out `balanced-k3@8` on runs/trace30 was off by
3.8% on average against 1.4% at 2."""

Trace = str | Path | tuple[dict, list[dict]]


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


def source_roles(names: Collection[str]) -> tuple[str | None, str | None]:
    """The ``(context, recycled)`` arguments of :func:`fit_model` and ``fit_beliefs`` for a
    method whose sources are named ``names``: each role's source name, ``None`` where
    the method has no such source."""
    return ("context" if "context" in names else None), ("recycled" if "recycled" in names else None)


def fit_worlds(traces: Sequence[Trace], names: Collection[str], split: bool = True, pooled: RegimeModel | None = None,
               **options) -> list[tuple[list[Trace], RegimeModel]]:
    """The worlds a shaper that learns within a generation is simulated in, each as
    ``(its traces, the model fitted to them)`` (:func:`fit_model` with ``options``).

    With ``split`` and more than one trace, every trace is a world of its own, so that
    the estimator learns from one text at a time (docs/simulator.md, "One world per
    prompt"). Otherwise, or when one trace alone never saw one of the sources named in
    ``names``, all traces are one world, modelled by ``pooled`` (fitted here when not
    given). Empty when even all traces together lack one of the sources."""
    wanted, roles = set(names), source_roles(names)

    def fitted(world: Sequence[Trace]) -> RegimeModel | None:
        try:
            model = fit_model(world, *roles, **options)
        except ValueError:
            return None
        return model if set(model.source_names()) == wanted else None

    worlds = []
    for t in traces if split and len(traces) > 1 else ():
        alone = fitted([t])
        if alone is None:
            worlds = []
            break
        worlds.append(([t], alone))
    if worlds:
        return worlds
    model = pooled if pooled is not None else fitted(traces)
    return [] if model is None or set(model.source_names()) != wanted else [(list(traces), model)]


def _count(traces: Sequence[Trace], context: str | None, recycled: str | None, ranks: int,
           states: int) -> list[Counts]:
    counts = [Counts(ranks) for _ in range(states)]
    for trace in traces:
        header, steps = load_trace(trace) if isinstance(trace, (str, Path)) else trace
        full = list(header["prompt"]) + list(header["tokens"])
        state = 0
        for s in steps:
            ref, c = s["reference"], counts[state]
            state = min(int(s["accepted"]), states - 1)
            if not ref:
                continue
            c.steps += 1
            chain = next((t for q in s["proposals"].get(context, []) if q["depth"] == 0 for t in q["tokens"] if t), [])
            if chain:
                c.matched += 1
                c.chain_lengths[min(len(chain), MAX_CHAIN)] += 1
                for d, tok in enumerate(chain[: len(ref)], 1):
                    c.trials[d] += 1
                    if tok != ref[d - 1]:
                        break
                    c.hits[d] += 1
            for q, d, place, spine in recycled_queries(s, recycled, full, chain):
                cands, conf = query_row(q, ranks)
                c.add_node(place, cands, spine, ref[d], conf)
            for q, place, rank, taken in ranked_queries(s, recycled, full, chain):
                c.add_row(place, rank, taken, *query_row(q, ranks))
    return counts


def _hazards(c: Counts, prior: np.ndarray | None, strength: float) -> np.ndarray:
    """Depth-conditional chain acceptances. Pooled (``prior`` None): depth 1 as
    counted, and every deeper depth shrunk towards the rate over all depths >= 2 (a
    copy that has started, whatever its depth). One state: each depth shrunk towards
    the pooled hazard of the same depth."""
    depth = int(np.max(np.nonzero(c.trials)[0], initial=0))
    if prior is not None:
        depth = max(depth, len(prior))
    deep = c.hits[2:].sum() / c.trials[2:].sum() if c.trials[2:].sum() else c.hits[1] / max(c.trials[1], 1)
    out: list[float] = []
    for d in range(1, max(depth, 1) + 1):
        if prior is not None:
            toward = prior[min(d, len(prior)) - 1]
        else:
            toward = deep if d > 1 else c.hits[1] / max(c.trials[1], 1)
        out.append(float(shrink(c.hits[d], c.trials[d], toward, strength)))
    return np.array(out)


def fit_model(traces: Sequence[Trace], context: str | None = "context", recycled: str | None = "recycled",
              ranks: int = 8, *, hazards: bool = True, places: bool = True, states: int = 1,
              lengths: bool = False, widths: bool = False, strength: float = 10.0) -> RegimeModel:
    """Source models fitted to what recorded traces show, with each component
    switchable. The defaults are the components that lowered the held-out error on
    the 28 release-dev prompts (docs/simulator.md, "How good are the predictions"):
    hazards and places on; states and lengths measured, no better, and off.

    * ``hazards``: chain acceptance per depth, given the depths above it accepted
      (:meth:`ChainModel.from_hazards`); off: one geometric ``alpha * decay**(d-1)``.
    * ``places``: recycled rank acceptances by where the node sits: the root with and
      without a context match, a chain node, a node below a recycled one, counted at
      every node on the committed text the trace queried; off: the root's only.
    * ``states``: steps come in bursts: a separate fit per state, the previous
      step's accepted draft length capped at ``states - 1`` (:class:`RegimeModel`).
    * ``lengths``: how long the context source's chains are (``ChainModel.lengths``);
      off: chains never end.
    * ``widths``: what the recycled rows look like (``RecycledModel.widths`` and
      ``ranked``): per place, how often a node has no row, one candidate at 1% or more,
      two, or more, and the rank acceptances of each kind of row; below the root, the
      kind also by the node's rank in its parent's row and whether the text took it
      (counted at every node whose parent is on the text). Off: every node has its
      place's average row.

    ``traces`` are paths of recorded traces, or ``(header, steps)`` pairs such as
    :func:`replay` records (``record=True``): a method's own trajectory over a
    recorded text, which is what :func:`predict_bench` and :func:`predict_methods`
    fit each method on.

    ``context=None`` or ``recycled=None`` fits a world without that source: a
    recycled-only world then counts the recycled source at every node, matched or
    not, as a recycled-only method would meet it. A source that never proposed
    anything is left out.

    Sparse counts are shrunk towards the pooled estimate with a Beta prior of
    ``strength`` pseudo-trials. The rank-0 candidate that is the chain's own token is
    one node with it: it counts as ``overlap``, not as a recycled hit.
    """
    if not traces:
        raise ValueError("no traces to fit")
    if states < 1:
        raise ValueError(f"states must be >= 1, got {states}")
    traces = [load_trace(t) if isinstance(t, (str, Path)) else t for t in traces]
    per_state = _count(traces, context, recycled, ranks, states)
    pooled = _count(traces, context, recycled, ranks, 1)[0] if states > 1 else per_state[0]
    if pooled.steps == 0:
        raise ValueError("the traces hold no steps")
    if not pooled.matched and not pooled.nodes:
        raise ValueError(f"no source named {context!r} or {recycled!r} proposed anything in the traces")
    pool_hz = _hazards(pooled, None, strength) if pooled.matched else None
    pool_betas = _betas(pooled, None, strength, places) if pooled.nodes else None
    models = []
    for c in per_state:
        chain = None
        if pooled.matched:
            match = (c.matched + strength * pooled.matched / pooled.steps) / (c.steps + strength)
            hz = _hazards(c, pool_hz if c is not pooled else None, strength)
            if hazards:
                chain = ChainModel.from_hazards(hz, float(match))
            else:
                chain = ChainModel(float(hz[0]), _decay(c, pooled), float(match))
            if lengths:
                survival = np.cumsum(pooled.chain_lengths[::-1])[::-1][1:] / pooled.matched  # P(length >= d)
                last = int(np.max(np.nonzero(survival)[0], initial=0)) + 1
                chain = replace(chain, lengths=tuple(float(x) for x in np.minimum(survival[:last], 1.0)))
        rec = None
        if pooled.nodes:
            betas = _betas(c, pool_betas if c is not pooled else None, strength, places)
            overlap = (c.overlaps + strength * pooled.overlaps / max(pooled.spine_nodes, 1)) / (c.spine_nodes + strength)
            if chain is not None and not (hazards or places or lengths):  # the plain model checks alpha + sum <= 1
                room = 1.0 - chain.alpha
                betas = {p: b * min(1.0, room / max(b.sum(), 1e-12)) * (1 - 1e-9) for p, b in betas.items()}
            rec = _places(betas, float(overlap), *(_widths(c, betas, ROW_STRENGTH) if widths else ({}, {})))
        models.append(SimulationModel(chain, rec))
    return RegimeModel(tuple(models))


def _decay(c: Counts, pooled: Counts) -> float:
    """The reduced model's geometric decay: the mean ratio of consecutive depth
    acceptances over depths with at least 20 trials, clipped to [0, 1] (as
    :func:`fit_traces` has it), from the pooled counts where a state has too few."""
    src = c if c.trials[2] >= 20 else pooled
    rates = [src.hits[d] / src.trials[d] for d in range(1, DEPTHS + 1) if src.trials[d] >= 20]
    ratios = [b / a for a, b in pairwise(rates) if a > 0]
    return float(np.clip(np.mean(ratios), 0.0, 1.0)) if ratios else 1.0


def _betas(c: Counts, prior: dict | None, strength: float, places: bool) -> dict[str, np.ndarray]:
    """Rank acceptances per place (non-increasing by rank), shrunk towards ``prior``
    (the pooled states' betas), or when pooling towards the all-places rates. Without
    ``places``, the root's betas only (with and without a match)."""
    groups = {p: (p,) for p in PLACES} if places else {"root": ("root", "root-match")}

    def total(table: dict, members: Sequence[str]) -> np.ndarray:
        return sum((table[p] for p in members if p in table), np.zeros(c.ranks))

    every_nodes, every_hits = total(c.nodes, PLACES), total(c.rank_hits, PLACES)
    overall = every_hits / np.maximum(every_nodes, 1)
    out = {}
    for key, members in groups.items():
        toward = prior[key] if prior is not None else overall
        out[key] = np.minimum.accumulate(shrink(total(c.rank_hits, members), total(c.nodes, members), toward, strength))
    return out


def _widths(c: Counts, betas: dict[str, np.ndarray], strength: float) -> tuple[dict, dict]:
    """``(widths, ranked)`` of a recycled model. Per place with recycled nodes: each row
    class's share of the nodes and its rank acceptances, shrunk towards the place's own
    (no row: none), and the class shares by a node's rank in its parent's row and
    whether the text took it. In a row of one or two strong candidates, the ranks below
    them had confidences under :data:`WIDE`; their rates stay under it too (at most half
    of it), so that a shaper with that floor drops them in the simulation as it dropped
    them on the text."""
    out, ranked = {}, {}
    for place, rows in c.rows.items():
        toward = betas.get(place, betas["root"])
        classes = [(float(rows[0] / rows.sum()), (0.0,) * c.ranks)]
        for k in range(1, len(ROW_CLASSES)):
            n, h = c.row_nodes.get((place, k), np.zeros(c.ranks)), c.row_hits.get((place, k), np.zeros(c.ranks))
            rate = np.minimum.accumulate(shrink(h, n, toward, strength))
            if k < len(ROW_CLASSES) - 1:
                rate[k:] = np.minimum(rate[k:], WIDE / 2)
            classes.append((float(rows[k] / rows.sum()), sub_one(rate)))
        out[place] = tuple(classes)
        table = c.ranked.get(place)
        if table is not None:  # by the node's rank and whether it was taken, shrunk towards the place's shares
            share = rows / rows.sum()
            by_rank = (table + strength * share) / (table.sum(axis=2, keepdims=True) + strength)
            ranked[place] = tuple(tuple(tuple(float(x) for x in r / r.sum()) for r in pair) for pair in by_rank)
    return out, ranked


def _places(betas: dict[str, np.ndarray], overlap: float, widths: dict | None = None,
            ranked: dict | None = None) -> RecycledModel:
    """A recycled model: the root's betas, and every other place's where it has its own
    (at a chain node the world scales them to the room the chain's child leaves)."""
    fitted = {p: sub_one(b) for p, b in betas.items()}
    root = fitted["root"]
    return RecycledModel(root, overlap, {p: b for p, b in fitted.items() if b != root}, widths or {}, ranked or {})
