"""Simulator: predict acceptance before running a model.

* Monte Carlo (:func:`simulate`, :func:`run_grid`): parametric source models drive
  goose's real shapers and greedy verifier against a simulated target.
* Trace replay (:func:`replay`): re-runs any shaper/budget offline on a trace
  recorded from a real greedy run.
"""

from ._grid import SIM_SHAPERS, run_grid, sim_shaper
from ._models import ChainModel, RecycledModel, SimulationModel, World, WorldSource
from ._montecarlo import SimResult, simulate

__all__ = [
    "SIM_SHAPERS",
    "ChainModel",
    "RecycledModel",
    "SimResult",
    "SimulationModel",
    "World",
    "WorldSource",
    "run_grid",
    "sim_shaper",
    "simulate",
]
