"""Predictions for ``goose bench`` runs: trace replay and fitted simulations."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

from tqdm.auto import tqdm

from goose.bench import trace_path
from goose.engine import GenerationRequest
from goose.methods import Memory, parse_method
from goose.theory import CostCurve

from ._beliefs import Beliefs, fit_beliefs
from ._fit import fit_worlds, source_roles
from ._grid import method_sim_shaper, planned_shaper
from ._models import RegimeModel
from ._montecarlo import plain_decoding_seconds, simulate, step_price
from ._replay import ReplayResult, load_trace, replay, replay_sources

__all__ = ["predict_bench", "recorded_cost"]

CONTEXT, RECYCLED = "context", "recycled"


def _order(records: Sequence[dict], key: str) -> list[str]:
    return list(dict.fromkeys(r[key] for r in records))


def _specs(records: Sequence[dict]) -> dict[str, str]:
    """Each column's method as recorded (``bf2`` -> ``best-first@auto``), without a
    verifier suffix; a column recorded before specs were is its own label."""
    return {r["method"]: r.get("spec", r["method"]).split("/")[0] for r in records}


def predict_bench(out_dir: Path, records: Sequence[dict], steps: int = 4000, seed: int = 0,
                  progress: bool = True, heldout: bool = True, cost: Callable[..., float] | None = None,
                  beliefs: bool | None = None, per_prompt: bool = True, **fit_options) -> dict:
    """Predicted MAT per task and goose method of a ``goose bench`` run, next to the
    measured one:

    * ``replay``: each prompt's trace replayed with the method's shaper and budget
      (:func:`replay`): the method's own trace where it was traced too, else the first
      traced method's (:func:`goose.bench.trace_path`);
    * ``sim``: the Monte Carlo simulator driven by source models (:func:`fit_model`,
      options ``fit_options``; row classes, ``widths``, for a method whose shape reads
      them, ``Method.sim_rows``) fitted to the method's own replays (its own sources at
      its own steps) on, with ``heldout`` (the default), the task's *other* prompts:
      leave one prompt out. Each prompt is predicted from a fit that never saw its
      text, and the task's MAT is its new tokens over the predicted forward calls.

    The simulator runs one of two shapers. With ``beliefs`` (by default, ``None``:
    for budget ``auto`` only) it runs the method's own shaper, acceptance estimator
    and all, on what its sources said in those replays (:func:`fit_beliefs`), one
    generation at a time (``simulate(episode=...)``): ``auto`` keeps as many nodes
    as its estimates, not the truth, make worth their cost. Without, it runs the
    method's simulator shaper (``Method.sim_shaper``) on the true acceptances, which
    predicted the fixed budgets better on the 28 release-dev prompts
    (docs/simulator.md, "How good are the predictions").

    With the own shaper and ``per_prompt`` (the default), every fitted prompt is a world
    of its own, simulated for ``steps`` over their number, and a prompt's predicted
    forward calls are the mean over those worlds. A shaper that learns within a
    generation drafts differently in a mixture of a copying prompt and a free one than
    in either. For shapers that do not learn, the steps are pooled.

    Methods with budget ``auto`` are predicted under ``cost``, the cost curve their
    trees were cut by (``goose.hf.calibrate``); without it they are left out, and so
    are transformers' own columns and lossy ones. A column is predicted as the method
    its record names (``spec``: ``bf2=best-first@auto`` as ``best-first@auto``). The
    simulated ``auto`` cuts its trees by ``cost`` as the run did. Their ``sim_speedup`` is the tokens per second the simulated
    steps make over plain decoding's, prefill included (:func:`prefill_seconds`),
    priced by the curve made non-decreasing (:meth:`CostCurve.monotone`: runs/trace30's curve put c(2) below
    c(1), which priced qa's one-node trees below a plain step and their speed-ups about
    10% high); ``speedup`` is the run's, where it has an ``ar`` column.

    A cross-request column (the ``*-shared`` methods) is replayed prompt by prompt in
    the run's order with one memory, as it ran, and each of its simulated runs carries
    one memory from generation to generation.

    Returns ``{task: {method: {"measured", "replay", "sim", "own_trace", "rows_missing"}}}``
    (MAT, prefill counted; ``own_trace``: every replay read the method's own trace;
    ``rows_missing``: the share of the replayed nodes whose target row the traces did
    not hold, None when the method has no learning source or the traces no rows
    (:class:`RowBook`); ``sim`` is None where the traces never saw one of the method's sources, a task has
    a single traced prompt under ``heldout``, or the method has no simulator shaper)."""
    traces = {r["question_id"]: trace_path(out_dir, r["question_id"]) for r in records}
    traces = {qid: path for qid, path in traces.items() if path.exists()}
    if not traces:
        return {}
    specs = _specs(records)
    ok = [r for r in records if "error" not in r and r.get("kind", "goose") == "goose" and r.get("lossless", True)
          and ("@auto" not in specs[r["method"]] or cost is not None) and r["method"] != "ar"
          and not r["method"].startswith("hf_")]
    plain = {r["question_id"]: r for r in records if r["method"] == "ar" and "error" not in r}
    price = step_price(cost)  # what a step costs; the cuts read cost
    carried = _carried_replays(out_dir, ok, traces, cost)
    out: dict = {}
    bar = tqdm(total=len({(r["task"], r["method"]) for r in ok}), desc="predictions", disable=not progress)
    for task in _order(ok, "task"):
        rows = [r for r in ok if r["task"] == task and r["question_id"] in traces]
        qids = _order(rows, "question_id")
        task_out = out.setdefault(task, {})
        for label in _order(rows, "method"):
            bar.update(1)
            method, budget = parse_method(specs[label])
            mrows = [r for r in rows if r["method"] == label]
            request = GenerationRequest(method, budget)
            d = request.plan(cost if request.auto else None, label=label)
            names = {s.name for s in d.sources}
            new = sum(r["new_tokens"] for r in mrows)
            paths = {r["question_id"]: _trace_of(out_dir, r["question_id"], label, traces) for r in mrows}
            replays = ({q: carried[label][q] for q in paths} if label in carried
                       else {q: _replayed(request, label, path, cost) for q, path in paths.items()})
            known = sum(x.rows_known for x in replays.values())
            missing = sum(x.rows_missing for x in replays.values())
            task_out[label] = {"measured": new / sum(r["forward_calls"] for r in mrows),
                               "replay": new / sum(x.forward_calls for x in replays.values()), "sim": None,
                               "own_trace": all(_is_own(x.trace[0], method.name, budget) for x in replays.values()),
                               "rows_missing": missing / (known + missing) if known + missing else None}
            if request.auto and all(r["question_id"] in plain for r in mrows):
                task_out[label]["speedup"] = (sum(plain[r["question_id"]]["wall_s"] for r in mrows)
                                              / sum(r["wall_s"] for r in mrows))
            if method.sim_shaper is None or not names <= {CONTEXT, RECYCLED} or (heldout and len(qids) < 2):
                continue
            own = request.auto if beliefs is None else beliefs
            options = {"widths": method.sim_rows, **fit_options}  # row classes where the shape reads them
            if own:  # the method's own shaper: a factory per simulated run (below)
                make, stateless = None, False
            else:
                make, stateless = method_sim_shaper(method, method.context(label, budget),
                                                    cost if request.auto else None)
            calls = seconds = plain_seconds = 0.0
            for r in mrows:
                fitted = [replays[q].trace for q in replays if q != r["question_id"] or not heldout]
                # The own shaper learns within a generation, so the fitted prompts are not
                # pooled into one stream of steps: each is a world of its own, and the
                # prediction averages their forward calls (docs/simulator.md).
                worlds = fit_worlds(fitted, names, split=own and per_prompt, **options)
                if not worlds:  # the fitted prompts never saw one of the sources
                    calls = None
                    break
                got = [_simulated(w, model, names, planned_shaper(request, label, cost) if own else make, stateless,
                                  d.budget, max(steps // len(worlds), 1), seed, price if request.auto else None, own, r)
                       for w, model in worlds]  # a cross-request method's memory: one per simulated run
                calls += sum(g.calls for g in got) / len(got)
                if all(g.seconds is not None for g in got):  # the prefill and plain decoding: one per prompt
                    seconds += got[0].prefill + sum(g.seconds for g in got) / len(got)
                    plain_seconds += got[0].prefill + got[0].plain_seconds
            if calls:
                task_out[label]["sim"] = new / calls
            if calls and seconds:
                task_out[label]["sim_speedup"] = plain_seconds / seconds
    bar.close()
    return out


def recorded_cost(out_dir: Path) -> CostCurve | None:
    """The cost curve a ``goose bench`` run's ``@auto`` columns were cut by, as their
    traces recorded it (``None`` if no trace did)."""
    for path in sorted((Path(out_dir) / "traces").rglob("*.jsonl")):
        header, _ = load_trace(path)
        if header.get("cost_curve"):
            return CostCurve.from_json(header["cost_curve"])
    return None


def _trace_of(out_dir: Path, qid: str, label: str, first: dict[str, Path]) -> Path:
    """The trace a method is replayed from: its own if it was traced, else the first traced method's."""
    own = trace_path(out_dir, qid, label)
    return own if own.exists() else first[qid]


def _is_own(header: dict, name: str, budget) -> bool:
    """Whether the trace with ``header`` was recorded by this method at this budget."""
    return header["method"] == name and header.get("requested") == budget


def _replayed(request: GenerationRequest, label: str, path: Path, cost, memory: Memory | None = None) -> ReplayResult:
    """The method replayed on a trace's text with fresh, stateful objects (a
    cross-request method: with ``memory``, the column's), recording what its own
    sources said at its own steps."""
    d = request.plan(cost if request.auto else None, label=label, memory=memory)
    sources, rows = replay_sources(d.sources, *load_trace(path))
    return replay(path, d.shaper, sources, d.budget, record=True, rows=rows)


def _carried_replays(out_dir: Path, records: Sequence[dict], traces: dict[str, Path], cost
                     ) -> dict[str, dict[str, ReplayResult]]:
    """The replays of each cross-request column (the ``*-shared`` methods), prompt by
    prompt in the run's order with one :class:`~goose.methods.Memory`, as the column
    ran: each generation starts from what the column's earlier ones left. The bench
    traces such a column from a copy of its memory taken before each prompt, so its
    own traces replay its generations exactly."""
    out: dict[str, dict[str, ReplayResult]] = {}
    specs = _specs(records)
    for label in _order(records, "method"):
        method, budget = parse_method(specs[label])
        if not method.cross_request:
            continue
        request, memory = GenerationRequest(method, budget), Memory()
        out[label] = {r["question_id"]: _replayed(request, label, _trace_of(out_dir, r["question_id"], label, traces),
                                                  cost, memory)
                      for r in records if r["method"] == label and r["question_id"] in traces}
    return out


class _Predicted(NamedTuple):
    """One prompt predicted from one world: forward calls (prefill counted) and, under a
    cost curve, the seconds of its decoding passes, of plain decoding's and of the
    prefill (``None, None, 0.0`` without)."""

    calls: float
    seconds: float | None
    plain_seconds: float | None
    prefill: float


def _simulated(traces: list, model: RegimeModel, names: set[str], make, stateless: bool, budget, steps: int,
               seed: int, cost, own: bool, record: dict) -> _Predicted:
    """``record``'s prompt predicted from the world of ``traces`` and their ``model``."""
    decode = max(record["new_tokens"] - 1, 0)
    res = simulate(model, make, budget, steps, seed, stateless=stateless, cost=cost,
                   beliefs=_beliefs(traces, names) if own else None,
                   episode=decode if own and decode else None, prompt=record.get("prompt_tokens") if own else None)
    calls = 1 + decode / res.mat
    if res.predicted_speedup is None or "prompt_tokens" not in record:
        return _Predicted(calls, None, None, 0.0)
    decoding = plain_decoding_seconds(cost, record["prompt_tokens"], decode)
    return _Predicted(calls, decoding / res.predicted_speedup, decoding, prefill_seconds(cost, record))


def prefill_seconds(cost: Callable[..., float], record: dict) -> float:
    """What the prefill of ``record``'s prompt costs, the same for a method and for plain
    decoding: by the curve's measured prefills (:meth:`CostCurve.prefill_cost`), else by
    the run's own prefill of that prompt (the record's time split), else by the curve's
    passes extrapolated (which priced a 1,000-token prompt at a twentieth of its time)."""
    n = record["prompt_tokens"]
    measured = cost.prefill_cost(n) if isinstance(cost, CostCurve) else None
    if measured is None:
        measured = (record.get("time") or {}).get("prefill")
    return float(measured) if measured is not None else cost(n)


def _beliefs(traces: list, names: set[str]) -> Beliefs:
    return fit_beliefs(traces, *source_roles(names))


