"""Sample-and-match MAT predicted from traces.

A version 3 trace holds, for every node of every verified tree, the target's top-10
tokens and their probabilities (at temperature 1). Under sampling, a drafted token
is taken with its probability under the target's sampling law (temperature, then
top-p), and children of one node are distinct tokens, so a tree's expected accepted
length is the sum over its nodes of the products of those probabilities along their
paths (:func:`goose.theory.expected_accepted`). For draft tokens that are point
masses (every goose source here), no lossless verifier accepts more than this: the
first token must be distributed as the target's law, so it is among a node's
children with at most their summed probability.

The law is known on the top 10 only: at temperature ``T != 1`` the tail's share of
the normaliser is bounded by giving every tail token the 10th probability (an upper
bound on the normaliser, so predicted acceptance can only be low).

Whose trees: a greedy run's trees along the greedy text overpredict a sampled run by
30% and more (docs/simulator.md): sampled text leaves the copies the greedy text
follows, and ``auto`` learns to keep fewer nodes. A sampled run traced under the same
law (``goose bench --temperature T --trace ...``) gives the trees that law drafts.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from goose.theory import expected_accepted

__all__ = ["expected_step_tokens", "predict_sampling", "sampling_law", "sampling_steps"]


def sampling_law(ids: Sequence[int], probs: Sequence[float], temperature: float = 1.0,
                 top_p: float = 1.0) -> dict[int, float]:
    """The target's sampling law on a recorded top-k row: probabilities raised to
    ``1 / temperature`` and renormalised (the tail bounded as the module says), then
    the nucleus: a token is kept while the mass above it is below ``top_p``
    (transformers' ``TopPLogitsWarper``), and the kept mass renormalised."""
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    p = np.asarray(probs, dtype=float)
    if p.size == 0:
        return {}
    rest = max(1.0 - float(p.sum()), 0.0)
    with np.errstate(divide="ignore"):  # in units of the largest, so a small temperature cannot underflow
        tempered = np.exp((np.log(p) - np.log(p.max())) / temperature)
    tail = 0.0
    if rest > 0 and p[-1] > 0:  # rest / p[-1] tokens, each as likely as the last recorded one
        tail = rest / p[-1] * float(np.exp((np.log(p[-1]) - np.log(p.max())) / temperature))
    z = float(tempered.sum()) + tail
    q, tail = tempered / z, tail / z
    if top_p < 1.0:
        above = np.concatenate([[0.0], np.cumsum(q)[:-1]])
        keep = above < top_p
        kept = float(q[keep].sum()) + (min(tail, top_p - float(q.sum())) if q.sum() < top_p else 0.0)
        q = np.where(keep, q / kept, 0.0)
    return {int(i): float(x) for i, x in zip(ids, q, strict=True) if x > 0}


def expected_step_tokens(step: dict, temperature: float = 1.0, top_p: float = 1.0) -> float | None:
    """``1 + E[A(T)]`` of a recorded step's verified tree under the sampling law
    (``None`` if the step recorded no rows: a version 2 trace)."""
    rows = step.get("verified")
    if not rows or "parents" not in rows:
        return None
    parents, tokens = rows["parents"], rows["tokens"]
    laws = [sampling_law(i, p, temperature, top_p) for i, p in zip(rows["ids"], rows["probs"], strict=True)]
    accept = [1.0] + [laws[parents[v]].get(int(tokens[v]), 0.0) for v in range(1, len(tokens))]
    return 1.0 + float(expected_accepted(np.asarray(parents), accept))


def sampling_steps(trace: str | Path | tuple[dict, list[dict]], temperature: float = 1.0,
                   top_p: float = 1.0) -> list[float]:
    """:func:`expected_step_tokens` of every step of a trace that recorded its rows."""
    from ._replay import load_trace

    _, steps = load_trace(trace) if isinstance(trace, (str, Path)) else trace
    out = (expected_step_tokens(s, temperature, top_p) for s in steps)
    return [x for x in out if x is not None]


def predict_sampling(traced_run: str | Path, sampled: Sequence[dict], temperature: float, top_p: float = 1.0,
                     heldout: bool = True) -> dict:
    """Sample-and-match MAT of a sampled ``goose bench`` run's columns, predicted from
    the traces of a ``goose bench --trace`` run of the same methods on the same
    prompts: a greedy run (the trees it drafted along the greedy text), or a sampled
    run under the same law (the trees drafted along sampled text; ``goose bench
    --temperature T --trace ...`` traces each column with its own draws).

    Each sampled record (method ``label``, prompt ``qid``) is predicted from the
    method's own traces (``traces/label/qid.jsonl``, or the first traced
    method's when that is the method): the expected tokens per step of their trees
    under the sampling law (:func:`sampling_steps`), pooled over the task's *other*
    prompts with ``heldout`` (leave one prompt out), else over the prompt's own. The
    prompt's forward calls are then ``1 + (new_tokens - 1) / per_step``.

    Returns ``{task: {label: {"measured", "predicted", "own"}}}`` (MAT, prefill
    counted; ``own``: each prompt predicted from its own trace); methods without
    traces are left out."""
    from goose.bench import trace_path
    from goose.methods import parse_method

    from ._replay import load_trace

    traced_run = Path(traced_run)
    steps: dict[tuple[str, str], list[float]] = {}
    out: dict = {}
    ok = [r for r in sampled if "error" not in r and r["method"] != "ar" and not r["method"].startswith("hf_")]
    for r in ok:
        key = (r["method"], r["question_id"])
        if key in steps:
            continue
        path = trace_path(traced_run, r["question_id"], r["method"])
        first = trace_path(traced_run, r["question_id"])
        if not path.exists() and first.exists():  # the first traced method's, if it is this one
            header, _ = load_trace(first)
            method, budget = parse_method(r["method"])
            if header["method"] == method.name and header.get("requested") == budget:
                path = first
        if path.exists():
            steps[key] = sampling_steps(path, temperature, top_p)
    for task in dict.fromkeys(r["task"] for r in ok):
        for label in dict.fromkeys(r["method"] for r in ok if r["task"] == task):
            rows = [r for r in ok if r["task"] == task and r["method"] == label and (label, r["question_id"]) in steps]
            if len(rows) < (2 if heldout else 1):
                continue
            new = sum(r["new_tokens"] for r in rows)
            calls = {"predicted": 0.0, "own": 0.0}
            for r in rows:
                others = [x for q in rows if q is not r or not heldout for x in steps[(label, q["question_id"])]]
                own = steps[(label, r["question_id"])]
                calls["predicted"] += 1 + max(r["new_tokens"] - 1, 0) / float(np.mean(others))
                calls["own"] += 1 + max(r["new_tokens"] - 1, 0) / float(np.mean(own))
            out.setdefault(task, {})[label] = {"measured": new / sum(r["forward_calls"] for r in rows),
                                               "predicted": new / calls["predicted"], "own": new / calls["own"]}
    return out
