"""Sweeps over shapers and budgets (shapers by the names of ``goose.trees.SHAPERS``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from tqdm.auto import tqdm

from goose.engine import GenerationRequest
from goose.methods import Memory, Method, MethodContext
from goose.theory import CostCurve
from goose.trees import AutoBudgetShaper, TreeShaper, shaper_spec

from ._models import SimulationModel
from ._montecarlo import SimResult, simulate

__all__ = ["closed_form", "method_sim_shaper", "planned_shaper", "run_grid", "sim_shaper"]


def sim_shaper(name: str) -> tuple[Callable[[], TreeShaper], bool]:
    """``(factory, stateless)`` of a shaper by registered name or dotted path
    (``package.module:Class``, built with no arguments and treated as stateful).
    Registered shapers come without acceptance estimators: the simulator's oracle
    sources make them unnecessary."""
    spec = shaper_spec(name)
    return spec.make, spec.stateless


def method_sim_shaper(method: Method, ctx: MethodContext, auto_cost: Callable[..., float] | None = None
                      ) -> tuple[Callable[[], TreeShaper], bool]:
    """``(factory, stateless)`` of the shaper that simulates ``method`` in context
    ``ctx``: its registered shaper name, or its own ``sim_shaper(ctx)`` (stateful);
    with ``auto_cost``, wrapped in the :class:`~goose.trees.AutoBudgetShaper` that
    cuts its trees by that cost curve (budget ``auto``, stateful)."""
    if method.sim_shaper is None:
        raise ValueError(f"method {method.name!r} names no simulator shaper")
    if callable(method.sim_shaper):
        make, stateless = (lambda: method.sim_shaper(ctx)), False
    else:
        make, stateless = sim_shaper(method.sim_shaper)
    if auto_cost is not None:
        return (lambda: AutoBudgetShaper(make(), auto_cost)), False
    return make, stateless


def planned_shaper(request: GenerationRequest, label: str, cost: Callable[..., float] | None = None
                   ) -> Callable[[], TreeShaper]:
    """Builds the shaper a method runs with, acceptance estimator and all, as ``goose
    generate`` plans it (``cost`` for budget ``auto``): what the simulator runs on
    recorded beliefs (``simulate(beliefs=...)``). A cross-request method (the
    ``*-shared`` ones) is handed one :class:`~goose.methods.Memory` for every shaper
    this factory builds, so each simulated generation starts from what the earlier
    ones left, as a bench column's generations do; build a factory per independent run."""
    memory = Memory() if request.method.cross_request else None
    return lambda: request.plan(cost if request.auto else None, label=label, memory=memory).shaper


def closed_form(shaper: str, alpha: float, betas: Sequence[float], budget: int, match_prob: float = 1.0,
                decay: float = 1.0, overlap: float = 0.0) -> float | None:
    """``goose.theory``'s tokens per step for a registered shaper under the
    simulator's source model, where one is known and applies (no overlap); else ``None``."""
    spec = shaper_spec(shaper)
    if overlap > 0 or spec.closed_form is None:
        return None
    with_match, without = spec.closed_form(alpha, list(betas), budget, decay)
    return 1.0 + match_prob * with_match + (1 - match_prob) * without


def run_grid(
    model: SimulationModel,
    shapers: Sequence[str],
    budgets: Sequence[int],
    steps: int,
    seed: int = 0,
    cost: CostCurve | None = None,
    show_progress: bool = True,
) -> list[SimResult]:
    """Simulate every (shaper, budget) pair with the same seed (common random numbers)."""
    if not budgets:
        raise ValueError("budgets is empty: give at least one budget")
    if not shapers:
        raise ValueError("shapers is empty: give at least one shaper")
    for b in budgets:
        if int(b) != b or b < 1:
            raise ValueError(f"budget must be an integer >= 1, got {b!r}")
    makers = {name: sim_shaper(name) for name in shapers}  # fail fast on unknown names
    results = []
    with tqdm(total=steps * len(shapers) * len(budgets), disable=not show_progress, unit="step") as bar:
        for name, (make, stateless) in makers.items():
            for budget in budgets:
                bar.set_postfix_str(f"{name} B={budget}")
                results.append(
                    simulate(model, make, int(budget), steps, seed, cost, name, stateless, progress=bar.update)
                )
    return results
