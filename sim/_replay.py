"""Trace replay: evaluate any shaper and budget offline on a recorded greedy run."""

from __future__ import annotations

import gzip
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from goose.engine import GenerationRequest, TraceRecorder
from goose.methods import get_method
from goose.sources import ContextNGramSource, Proposal, TokenSource
from goose.theory import CostCurve
from goose.trees import TreeShaper

__all__ = ["ReplayResult", "TraceSource", "load_trace", "replay", "replay_method"]


def load_trace(path: str | Path) -> tuple[dict, list[dict]]:
    """``(header, steps)`` of a JSONL trace (format: ``goose.engine._trace``; gzipped
    when its name ends in ``.gz``)."""
    path = Path(path)
    text = gzip.decompress(path.read_bytes()).decode() if path.suffix == ".gz" else path.read_text()
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]
    if not lines or lines[0].get("type") != "header":
        raise ValueError(f"{path} is not a goose trace: its first line must be the header")
    return lines[0], [s for s in lines[1:] if s.get("type") == "step"]


class TraceSource(TokenSource):
    """Answers from what a recorded source said: for a node whose token is ``t``, the
    proposals the recorded source last gave for ``t`` at or before the current
    context length (how a recycled table evolves). Approximate for learning sources
    off the recorded trajectory; exact on it."""

    def __init__(self, name: str, steps: Sequence[dict]) -> None:
        self.name = name
        self._steps = sorted(steps, key=lambda s: s["context_len"])
        self.begin(())

    def begin(self, prompt: Sequence[int]) -> None:
        self._next = 0
        self._rows: dict[int, list[Proposal]] = {}

    def _advance(self, context_len: int) -> None:
        while self._next < len(self._steps) and self._steps[self._next]["context_len"] <= context_len:
            for q in self._steps[self._next]["proposals"].get(self.name, []):
                self._rows[q["query"][-1]] = [
                    Proposal(tuple(t), tuple(c), self.name, k)
                    for t, c, k in zip(q["tokens"], q["confidence"], q["keys"], strict=True)
                ]
            self._next += 1

    def propose(self, context: Sequence[int], path: Sequence[int] = ()) -> list[Proposal]:
        if not context:
            return []
        self._advance(len(context))
        token = int(path[-1]) if path else int(context[-1])
        return list(self._rows.get(token, []))


@dataclass
class ReplayResult:
    """MAT of the replayed configuration next to the recorded run's; with
    ``replay(..., record=True)``, ``trace`` is the replay's own ``(header, steps)``
    in the trace format, what its sources said at each of its steps."""

    mat: float
    forward_calls: int
    recorded_mat: float
    recorded_forward_calls: int
    trace: tuple[dict, list[dict]] | None = None

    @property
    def relative_error(self) -> float:
        return (self.mat - self.recorded_mat) / self.recorded_mat


def replay(path: str | Path, shaper: TreeShaper, sources: Sequence[TokenSource], budget: int,
           record: bool = False) -> ReplayResult:
    """Re-run decoding on the recorded greedy continuation: each step the shaper
    builds a tree (cut, as the decode loop cuts it, to what the token limit can
    still emit), and the accepted path is the longest one that follows the recorded
    tokens (what the greedy target chose), plus the bonus. Sources and shaper get
    the same lifecycle calls as in the decode loop. ``record`` keeps what the sources
    proposed (:attr:`ReplayResult.trace`)."""
    header, _ = load_trace(path)
    prompt, tokens = header["prompt"], header["tokens"]
    full = prompt + tokens
    recorder = TraceRecorder() if record else None
    if recorder is not None:
        sources = recorder.wrap(sources)
    hooks = [*sources, shaper]
    for h in hooks:
        h.begin(list(prompt))
    for h in hooks:  # prefill committed the first token
        h.commit(full[len(prompt) : len(prompt) + 1])
    pos, calls = len(prompt) + 1, 1
    while pos < len(full):
        tree = shaper.shape(full[:pos], sources, budget)
        if int(tree.depths.max()) > len(full) - pos - 1:
            tree = tree.truncated(len(full) - pos - 1)
        node, accepted = 0, []
        while pos + len(accepted) < len(full):
            child = tree.child_with_token(node, full[pos + len(accepted)])
            if child is None:
                break
            node = child
            accepted.append(child)
        shaper.record(tree, accepted)
        if recorder is not None:
            recorder.step({"context_len": pos, "accepted": len(accepted)})
        for h in hooks:
            h.commit(full[pos : pos + len(accepted) + 1])
        pos += len(accepted) + 1
        calls += 1
    for h in hooks:
        h.end(full)
    trace = None
    if recorder is not None:
        steps = [s | {"reference": full[s["context_len"] : s["context_len"] + 32]} for s in recorder.steps]
        trace = ({**header, "forward_calls": calls, "mat": len(tokens) / calls}, steps)
    return ReplayResult(len(tokens) / calls, calls, header["mat"], header["forward_calls"], trace)


def replay_method(path: str | Path, method: str | None = None, budget: int | str | None = None) -> ReplayResult:
    """Replay a method (default: the recorded one) at ``budget`` (default: what the
    recorded run was asked for, ``auto`` included: its trees are then cut by the cost
    curve the trace recorded). Context sources are rebuilt exactly; every other
    source answers from the trace (:class:`TraceSource`). For a run whose sources
    are all context sources the replay reproduces the recorded run's forward calls."""
    header, steps = load_trace(path)
    m = get_method(method or header["method"])
    same = method is None or method == header["method"]
    want = budget if budget is not None else header.get("requested") if same else None
    if want is None and same and header.get("version", 1) < 2:
        want = header["budget"]  # version 1 traces recorded the node budget only
    request = GenerationRequest(m, want)
    cost = None
    if request.auto:
        if not header.get("cost_curve"):
            raise ValueError(f"{path}: replaying budget 'auto' needs the cost curve, and the trace has none")
        cost = CostCurve.from_json(header["cost_curve"])
    d = request.plan(cost)
    sources = [s if isinstance(s, ContextNGramSource) else TraceSource(s.name, steps) for s in d.sources]
    return replay(path, d.shaper, sources, d.budget)
