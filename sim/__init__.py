"""Simulator: predict acceptance before running a model.

* Monte Carlo (:func:`simulate`, :func:`run_grid`): parametric source models drive
  goose's real shapers and greedy verifier against a simulated target.
* Fitting (:func:`fit_model`) and prediction (:func:`predict_methods`): source
  models fitted to recorded traces, then every method simulated on them.
* Trace replay (:func:`replay`): re-runs any shaper/budget offline on a trace
  recorded from a real greedy run.
* Sampling regime (:func:`simulate_sampling`, :func:`exact_sampling_mat`): a target
  ``p`` and a draft ``q`` per node; MAT of sample-and-match, recursive rejection
  sampling and Traversal Verification.
"""

from ._bench import predict_bench
from ._figures import plot_mat_vs_budget
from ._figures import write_all as write_figures
from ._fit import fit_model, fit_traces
from ._grid import closed_form, method_sim_shaper, run_grid, sim_shaper
from ._models import PLACES, ChainModel, RecycledModel, RegimeModel, SimulationModel, World, WorldSource
from ._montecarlo import SimResult, simulate
from ._predict import predict_methods, simulated_methods
from ._replay import ReplayResult, RowBook, TraceSource, load_trace, replay, replay_method, replay_sources
from ._sampling import SAMPLING_VERIFIERS, SamplingWorld, exact_sampling_mat, simulate_sampling

__all__ = [
    "PLACES",
    "SAMPLING_VERIFIERS",
    "ChainModel",
    "RecycledModel",
    "RegimeModel",
    "ReplayResult",
    "RowBook",
    "SamplingWorld",
    "SimResult",
    "SimulationModel",
    "TraceSource",
    "World",
    "WorldSource",
    "closed_form",
    "exact_sampling_mat",
    "fit_model",
    "fit_traces",
    "load_trace",
    "method_sim_shaper",
    "plot_mat_vs_budget",
    "predict_bench",
    "predict_methods",
    "replay",
    "replay_method",
    "replay_sources",
    "run_grid",
    "sim_shaper",
    "simulate",
    "simulate_sampling",
    "simulated_methods",
    "write_figures",
]
