"""Simulator: predict acceptance before running a model.

* Monte Carlo (:func:`simulate`, :func:`run_grid`): parametric source models drive
  goose's real shapers and greedy verifier against a simulated target.
* Trace replay (:func:`replay`): re-runs any shaper/budget offline on a trace
  recorded from a real greedy run.
"""

from ._bench import predict_bench
from ._fit import fit_traces
from ._grid import SIM_SHAPERS, run_grid, sim_shaper
from ._models import ChainModel, RecycledModel, SimulationModel, World, WorldSource
from ._montecarlo import SimResult, simulate
from ._replay import ReplayResult, TraceSource, load_trace, replay, replay_method

__all__ = [
    "SIM_SHAPERS",
    "ChainModel",
    "RecycledModel",
    "ReplayResult",
    "SimResult",
    "SimulationModel",
    "TraceSource",
    "World",
    "WorldSource",
    "fit_traces",
    "load_trace",
    "predict_bench",
    "replay",
    "replay_method",
    "run_grid",
    "sim_shaper",
    "simulate",
]
