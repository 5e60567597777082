"""Predict every method from a handful of traces: fit once, simulate each method and budget."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from tqdm.auto import tqdm

from goose.engine import GenerationRequest
from goose.methods import METHODS, Memory, parse_method
from goose.theory import CostCurve

from ._beliefs import fit_beliefs
from ._fit import fit_model, fit_worlds, source_roles
from ._grid import method_sim_shaper, planned_shaper
from ._montecarlo import SimResult, plain_decoding_seconds, simulate, step_price
from ._replay import load_trace, replay, replay_sources

__all__ = ["end_to_end", "predict_methods", "simulated_methods"]

CONTEXT, RECYCLED = "context", "recycled"


def simulated_methods() -> list[str]:
    """Registered methods the fitted simulator can model: a simulator shaper, and
    sources among the context and recycled ones."""
    out = []
    for name, m in METHODS.items():
        if m.sim_shaper is None:
            continue
        names = {s.name for s in GenerationRequest(m, None).plan(label=name).sources}
        if names and names <= {CONTEXT, RECYCLED}:
            out.append(name)
    return out


def predict_methods(traces: Sequence[str | Path], labels: Sequence[str], cost: Callable[..., float] | None = None,
                    steps: int = 4000, seed: int = 0, progress: bool = True, **fit_options) -> list[dict]:
    """Fit source models (:func:`fit_model`, ``fit_options``; row classes for a method
    whose shape reads them, ``Method.sim_rows``) to each method's own
    steps over the recorded texts (:func:`replay` with ``record=True``), and
    simulate each method label (``name``, ``name@B`` or ``name@auto``), with common
    random numbers. Greedy acceptance does not depend on the device, so traces from
    one machine and a cost curve ``cost`` measured on another (``goose calibrate
    --out``) predict that other machine's speed-ups.

    Budget ``auto`` runs the method's own shaper and acceptance estimator on the
    confidences its sources gave over the recorded texts (:func:`fit_beliefs`), one
    generation of the recorded length at a time, as :func:`predict_bench` does. Trees are
    cut by ``cost`` and steps priced by its monotone fit (:meth:`CostCurve.monotone`),
    as :func:`predict_bench` prices them.

    ``speedup`` is the decoding's speed-up. Where ``cost`` holds measured prefills
    (``goose calibrate`` times them), ``speedup_e2e`` is the speed-up of the traced
    generations as a whole: each traced prompt's prefill, common to the method and to
    plain decoding, priced by :meth:`CostCurve.prefill_cost`, as :func:`predict_bench`
    prices it. On long prompts and a slow device the prefill is much of the wall time,
    and the decoding's speed-up alone overstates the whole.

    Returns one dict per label, best first (by predicted speed-up under ``cost``, else
    by MAT): ``method``, ``budget``, ``mat`` and its ``ci95``, ``mean_nodes``,
    ``speedup`` and ``speedup_e2e`` with their ``speedup_ci95`` and ``speedup_e2e_ci95``
    (``None`` without a cost curve, or for ``speedup_e2e`` without measured prefills),
    or ``skipped`` with the reason the simulator cannot model it."""
    rows: list[dict] = []
    for label in tqdm(labels, desc="predict", disable=not progress):
        method, budget = parse_method(label)
        request = GenerationRequest(method, budget)
        if request.auto and cost is None:
            rows.append({"method": label, "skipped": "budget 'auto' needs a cost curve (--cost-curve)"})
            continue
        plan = request.plan(cost, label=label)
        price = step_price(cost)  # as predict_bench prices steps
        names = frozenset(s.name for s in plan.sources)
        if method.sim_shaper is None or not names <= {CONTEXT, RECYCLED}:
            rows.append({"method": label, "skipped": f"no simulator model of its sources ({', '.join(sorted(names))})"})
            continue
        memory = Memory() if method.cross_request else None  # a *-shared method carries it through the traces
        own = [_own_steps(request, label, cost, t, memory) for t in traces]  # as predict_bench fits
        options = {"widths": method.sim_rows, **fit_options}  # row classes where the shape reads them
        try:
            model = fit_model(own, *source_roles(names), **options)
        except ValueError as e:
            rows.append({"method": label, "skipped": f"nothing to fit: {e}"})
            continue
        if request.auto:
            decode = round(sum(len(h["tokens"]) for h, _ in own) / len(own)) - 1
            r = _own_shaper(request, label, cost, price, own, model, names, steps, seed, decode, options)
        else:
            make, stateless = method_sim_shaper(method, method.context(label, budget))
            r = simulate(model, make, plan.budget, steps, seed, cost=price, name=label, stateless=stateless)
        row = {"method": label, "budget": "auto" if request.auto else plan.budget, "mat": r.mat,
               "ci95": list(r.ci95), "mean_nodes": r.mean_nodes, "speedup": r.predicted_speedup, "speedup_ci95": None,
               "speedup_e2e": None, "speedup_e2e_ci95": None}
        if r.predicted_speedup is not None:  # the speed-up is the MAT over a fixed mean step cost
            row["speedup_ci95"] = [r.predicted_speedup * x / r.mat for x in r.ci95]
            whole = end_to_end(price, [h for h, _ in own])  # priced as predict_bench prices them
            if whole is not None:
                row["speedup_e2e"] = whole(r.predicted_speedup)
                row["speedup_e2e_ci95"] = [whole(x) for x in row["speedup_ci95"]]
        rows.append(row)
    ranked = sorted((r for r in rows if "skipped" not in r), key=lambda r: -(r["speedup"] or r["mat"]))
    return ranked + [r for r in rows if "skipped" in r]


def end_to_end(cost: Callable[..., float] | None, headers: Sequence[dict]) -> Callable[[float], float] | None:
    """The speed-up of the generations of these trace ``headers`` (their prompts and new
    tokens) as a function of the decoding's speed-up ``s``: the prefills plus plain
    decoding's passes over the prefills plus those passes divided by ``s`` (plain
    decoding priced mid-generation, as :func:`predict_bench` does). ``None`` unless
    ``cost`` is a :class:`CostCurve` with measured prefills.

    Example:
        >>> c = CostCurve([1, 2], [0.1, 0.15], prefill=[(100, 1.0)])
        >>> whole = end_to_end(c, [{"prompt": [0] * 100, "tokens": [0] * 11}])
        >>> round(whole(2.0), 3)  # 1 s prefill + 1 s decoding, halved: 2 / 1.5
        1.333
    """
    if not isinstance(cost, CostCurve) or cost.prefill is None or not headers:
        return None
    prefill = plain = 0.0
    for h in headers:
        n, decode = len(h["prompt"]), max(len(h["tokens"]) - 1, 0)  # the first new token is the prefill's
        prefill += cost.prefill_cost(n)
        plain += plain_decoding_seconds(cost, n, decode)
    return lambda s: (prefill + plain) / (prefill + plain / s)


def _own_shaper(request: GenerationRequest, label: str, cost, price, own: list, pooled, names: frozenset[str],
                steps: int, seed: int, decode: int, fit_options: dict) -> SimResult:
    """Budget ``auto`` with the method's own shaper on recorded beliefs, in the worlds of
    :func:`fit_worlds` (as :func:`predict_bench` does): the harmonic mean of the worlds'
    MATs (their mean forward calls per generation), their CI bounds combined bound by
    bound, and the speed-ups likewise. Trees are cut by ``cost``, steps priced by ``price``."""
    worlds = fit_worlds(own, names, pooled=pooled, **fit_options) or [(own, pooled)]
    budget = request.plan(cost, label=label).budget
    results = [simulate(model, planned_shaper(request, label, cost), budget, max(steps // len(worlds), 1), seed,
                        cost=price, name=label, beliefs=fit_beliefs(world, *source_roles(names)),
                        episode=decode if decode > 0 else None) for world, model in worlds]
    if len(results) == 1:
        return results[0]
    weights = [1 / r.mat for r in results]  # steps per token: a world's share of the steps
    return replace(results[0], steps=sum(r.steps for r in results), mat=_harmonic([r.mat for r in results]),
                   ci95=(_harmonic([r.ci95[0] for r in results]), _harmonic([r.ci95[1] for r in results])),
                   mean_nodes=sum(w * r.mean_nodes for w, r in zip(weights, results, strict=True)) / sum(weights),
                   predicted_speedup=(_harmonic([r.predicted_speedup for r in results])
                                      if all(r.predicted_speedup for r in results) else None))


def _harmonic(xs: Sequence[float]) -> float:
    return len(xs) / sum(1 / x for x in xs)


def _own_steps(request: GenerationRequest, label: str, cost: Callable[..., float] | None,
               trace: str | Path, memory: Memory | None = None) -> tuple[dict, list[dict]]:
    """The method replayed on a recorded text with fresh parts (a cross-request
    method's: from ``memory``), recording its own steps."""
    plan = request.plan(cost, label=label, memory=memory)
    sources, rows = replay_sources(plan.sources, *load_trace(trace))
    return replay(trace, plan.shaper, sources, plan.budget, record=True, rows=rows).trace
