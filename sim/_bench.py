"""Predictions for ``goose bench`` runs: trace replay and fitted simulations."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from tqdm.auto import tqdm

from goose.bench import trace_path
from goose.engine import GenerationRequest
from goose.methods import parse_method
from goose.sources import ContextNGramSource

from ._fit import fit_traces
from ._grid import method_sim_shaper
from ._models import SimulationModel
from ._montecarlo import simulate
from ._replay import TraceSource, load_trace, replay

__all__ = ["predict_bench"]

CONTEXT, RECYCLED = "context", "recycled"


def _order(records: Sequence[dict], key: str) -> list[str]:
    return list(dict.fromkeys(r[key] for r in records))


def predict_bench(out_dir: Path, records: Sequence[dict], steps: int = 4000, seed: int = 0,
                  progress: bool = True) -> dict:
    """Predicted MAT per task and goose method of a ``goose bench`` run, next to the
    measured one: each prompt's trace (``out_dir/traces``) replayed with the method's
    shaper and budget (:func:`replay`), and the Monte Carlo simulator driven by source
    models fitted to the task's traces (:func:`fit_traces`) with the method's
    simulator shaper (``Method.sim_shaper``). Methods with budget ``auto`` are left
    out (their trees depend on the cost curve, not only on tokens), and so are
    transformers' own columns.

    Returns ``{task: {method: {"measured", "replay", "sim"}}}`` (MAT, prefill counted;
    ``sim`` is None where the traces never saw one of the method's sources or the
    method has no simulator shaper)."""
    traces = {r["question_id"]: trace_path(out_dir, r["question_id"]) for r in records}
    traces = {qid: path for qid, path in traces.items() if path.exists()}
    if not traces:
        return {}
    ok = [r for r in records if "error" not in r and r.get("kind", "goose") == "goose" and "@auto" not in r["method"]
          and r["method"] != "ar" and not r["method"].startswith("hf_")]
    out: dict = {}
    bar = tqdm(total=len({(r["task"], r["method"]) for r in ok}), desc="predictions", disable=not progress)
    for task in _order(ok, "task"):
        rows = [r for r in ok if r["task"] == task and r["question_id"] in traces]
        if not rows:
            continue
        try:
            fitted = fit_traces([traces[r["question_id"]] for r in rows if r["method"] == rows[0]["method"]])
        except ValueError:
            continue
        task_out = out.setdefault(task, {})
        for label in _order(rows, "method"):
            bar.update(1)
            method, budget = parse_method(label)
            mrows = [r for r in rows if r["method"] == label]
            rep_calls = 0
            for r in mrows:  # fresh, stateful objects per prompt
                d = GenerationRequest(method, budget).plan(label=label)
                _, steps_rec = load_trace(traces[r["question_id"]])
                srcs = [s if isinstance(s, ContextNGramSource) else TraceSource(s.name, steps_rec) for s in d.sources]
                rep_calls += replay(traces[r["question_id"]], d.shaper, srcs, d.budget).forward_calls
            names = {s.name for s in d.sources}
            model = SimulationModel(fitted.chain if CONTEXT in names else None,
                                    fitted.recycled if RECYCLED in names else None)
            new = sum(r["new_tokens"] for r in mrows)
            task_out[label] = {"measured": new / sum(r["forward_calls"] for r in mrows), "replay": new / rep_calls,
                               "sim": None}
            if method.sim_shaper is None or set(model.source_names()) != names:
                continue  # nothing to simulate with, or a source never proposed in these traces
            make, stateless = method_sim_shaper(method, method.context(label, budget))
            per_step = simulate(model, make, d.budget, steps, seed, stateless=stateless).mat
            task_out[label]["sim"] = new / sum(1 + max(r["new_tokens"] - 1, 0) / per_step for r in mrows)
    bar.close()
    return out
