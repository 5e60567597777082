"""Simulator: predict acceptance before running a model.

* Monte Carlo (:func:`simulate`, :func:`run_grid`): parametric source models drive
  goose's real shapers and greedy verifier against a simulated target.
* Trace replay (:func:`replay`): re-runs any shaper/budget offline on a trace
  recorded from a real greedy run.
"""

from ._bench import predict_bench
from ._figures import plot_mat_vs_budget
from ._figures import write_all as write_figures
from ._fit import fit_traces
from ._grid import closed_form, method_sim_shaper, run_grid, sim_shaper
from ._models import ChainModel, RecycledModel, SimulationModel, World, WorldSource
from ._montecarlo import SimResult, simulate
from ._replay import ReplayResult, TraceSource, load_trace, replay, replay_method

__all__ = [
    "ChainModel",
    "RecycledModel",
    "ReplayResult",
    "SimResult",
    "SimulationModel",
    "TraceSource",
    "World",
    "WorldSource",
    "closed_form",
    "fit_traces",
    "load_trace",
    "method_sim_shaper",
    "plot_mat_vs_budget",
    "predict_bench",
    "replay",
    "replay_method",
    "run_grid",
    "sim_shaper",
    "simulate",
    "write_figures",
]
