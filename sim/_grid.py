"""Sweeps over shapers and budgets, and the shapers the simulator knows by name."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from tqdm.auto import tqdm

from goose._registry import resolve
from goose.theory import CostCurve
from goose.trees import BalancedShaper, BestFirstShaper, ChainShaper, GoosePaperShaper, SpineShaper, TreeShaper

from ._models import SimulationModel
from ._montecarlo import SimResult, simulate

__all__ = ["SIM_SHAPERS", "run_grid", "sim_shaper"]

# name -> (factory, stateless). Oracle sources make estimators unnecessary here.
SIM_SHAPERS: dict[str, tuple[Callable[[], TreeShaper], bool]] = {
    "chain": (ChainShaper, True),
    "balanced": (BalancedShaper, True),
    "balanced-k5": (lambda: BalancedShaper(k=5), True),
    "spine": (SpineShaper, True),
    "best-first": (BestFirstShaper, True),
    "paper": (GoosePaperShaper, False),
}


def sim_shaper(name: str) -> tuple[Callable[[], TreeShaper], bool]:
    """A simulator shaper by name, or a dotted path to a TreeShaper class (built
    with no arguments; treated as stateful)."""
    if name in SIM_SHAPERS:
        return SIM_SHAPERS[name]
    cls = resolve(name, {k: v[0] for k, v in SIM_SHAPERS.items()}, "shaper")
    return cls, False


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
