"""Simulator: predict acceptance before running a model.

* Monte Carlo (:func:`simulate`, :func:`run_grid`): parametric source models drive
  goose's real shapers and greedy verifier against a simulated target.
* Fitting (:func:`fit_model`) and prediction (:func:`predict_methods`): source
  models fitted to recorded traces, then every method simulated on them.
* Beliefs (:func:`fit_beliefs`, :class:`BeliefWorld`): the confidences real
  sources gave, recorded with their outcomes, so a method's own shaper and
  acceptance estimator run in the simulator (budget ``auto``).
* Trace replay (:func:`replay`): re-runs any shaper/budget offline on a trace
  recorded from a real greedy run.
* Sampling regime (:func:`simulate_sampling`, :func:`exact_sampling_mat`): a target
  ``p`` and a draft ``q`` per node; MAT of sample-and-match, recursive rejection
  sampling and Traversal Verification. From greedy traces
  (:func:`predict_sampling`): every recorded tree's expected accepted length under
  the target's sampling law (temperature, top-p).
"""

from ._beliefs import Beliefs, BeliefWorld, RecordedChain, fit_beliefs
from ._bench import predict_bench, prefill_seconds, recorded_cost
from ._figures import plot_mat_vs_budget
from ._figures import write_all as write_figures
from ._fit import fit_model, fit_traces
from ._grid import closed_form, method_sim_shaper, planned_shaper, run_grid, sim_shaper
from ._models import PLACES, ChainModel, RecycledModel, RegimeModel, SimulationModel, World, WorldSource
from ._montecarlo import SimResult, simulate
from ._predict import end_to_end, predict_methods, simulated_methods
from ._replay import ReplayResult, RowBook, TraceSource, load_trace, replay, replay_method, replay_sources
from ._sampling import SAMPLING_VERIFIERS, SamplingWorld, exact_sampling_mat, simulate_sampling
from ._sampling_trace import expected_step_tokens, predict_sampling, sampling_law, sampling_steps

__all__ = [
    "PLACES",
    "SAMPLING_VERIFIERS",
    "BeliefWorld",
    "Beliefs",
    "ChainModel",
    "RecycledModel",
    "RecordedChain",
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
    "end_to_end",
    "exact_sampling_mat",
    "expected_step_tokens",
    "fit_beliefs",
    "fit_model",
    "fit_traces",
    "load_trace",
    "method_sim_shaper",
    "planned_shaper",
    "plot_mat_vs_budget",
    "predict_bench",
    "predict_methods",
    "predict_sampling",
    "prefill_seconds",
    "recorded_cost",
    "replay",
    "replay_method",
    "replay_sources",
    "run_grid",
    "sampling_law",
    "sampling_steps",
    "sim_shaper",
    "simulate",
    "simulate_sampling",
    "simulated_methods",
    "write_figures",
]
