"""Trace replay: evaluate any shaper and budget offline on a recorded greedy run."""

from __future__ import annotations

import gzip
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from goose.engine import GenerationRequest, GenerationStats, TraceRecorder, prefill_positions
from goose.methods import get_method
from goose.sources import ContextNGramSource, Observation, Proposal, TokenSource
from goose.theory import CostCurve
from goose.trees import DraftTree, TreeShaper
from goose.verify import Verdict

__all__ = ["ReplayResult", "RowBook", "TraceSource", "load_trace", "replay", "replay_method", "replay_sources"]


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


def _watches(source: TokenSource) -> bool:
    return type(source).observe is not TokenSource.observe


def _require(record: dict, keys: Sequence[str], what: str) -> None:
    """One clear error where a trace lacks a field the replay reads."""
    lacking = [k for k in keys if k not in record]
    if lacking:
        raise ValueError(f"{what} lacks {', '.join(lacking)} (not a complete version 3 goose trace)")


def _row_arrays(rows: dict) -> tuple[np.ndarray, np.ndarray]:
    return np.asarray(rows["ids"], dtype=np.int64), np.asarray(rows["probs"], dtype=np.float32)


class RowBook:
    """The target rows a trace (version 3) recorded, looked up by the text they follow.

    A node of a tree drafted at context length ``L`` after the recorded text ``full``
    stands for the sequence ``full[:L] + path``. Its key is that sequence written as
    the longest prefix of ``full`` it shares, ``m`` tokens, and the rest:
    ``(m, rest)``. Greedy targets are deterministic, so two nodes with one key were
    given one row, whichever run or tree they sat in. :meth:`observation` builds, for
    a replayed tree, the observation the decode loop would have shown the learning
    sources, from the nodes whose rows the trace holds; :attr:`known` and
    :attr:`missing` count the nodes looked up. With ``missing == 0`` the learning
    sources saw exactly what they would have seen in a real run, so a greedy replay
    is exact; a missing row leaves the source as it was (a recycled table keeps its
    older row for that token), which is the replay's only approximation."""

    def __init__(self, header: dict, steps: Sequence[dict]) -> None:
        _require(header, ("prompt", "tokens"), "the trace header")
        self.full = [int(t) for t in header["prompt"]] + [int(t) for t in header["tokens"]]
        self._rows: dict[tuple[int, tuple[int, ...]], tuple[np.ndarray, np.ndarray]] = {}
        self.known = self.missing = 0
        pre = header.get("prefill")
        self._prefill = {}
        if pre:
            _require(pre, ("ids", "probs", "positions"), "the trace's prefill rows")
            ids, probs = _row_arrays(pre)
            self._prefill = {int(p): (ids[i], probs[i]) for i, p in enumerate(pre["positions"])}
        for s in steps:
            v = s.get("verified")
            if not v:
                continue
            _require(s, ("context_len",), f"step {s.get('step', '?')} of the trace")
            _require(v, ("tokens", "parents", "ids", "probs"), f"the rows of step {s.get('step', '?')} of the trace")
            ids, probs = _row_arrays(v)
            tree = DraftTree(v["tokens"], v["parents"])
            for node, key in enumerate(self._keys(tree, int(s["context_len"]))):
                self._rows[key] = (ids[node], probs[node])

    @staticmethod
    def has_rows(header: dict, steps: Sequence[dict]) -> bool:
        """Whether the trace recorded the target's rows (version 3 and later)."""
        return header.get("version", 1) >= 3 and any(s.get("verified") for s in steps)

    def _keys(self, tree: DraftTree, context_len: int) -> list[tuple[int, tuple[int, ...]]]:
        keys: list[tuple[int, tuple[int, ...]]] = [(context_len, ())]
        full = self.full
        for v in range(1, tree.num_nodes):
            m, rest = keys[int(tree.parents[v])]
            t = int(tree.tokens[v])
            keys.append((m + 1, ()) if not rest and m < len(full) and full[m] == t else (m, rest + (t,)))
        return keys

    def prefill_observation(self, prompt: Sequence[int], needs: set[str]) -> Observation | None:
        """What the prefill showed sources with these ``prefill_positions``, from the
        recorded prompt positions (``None`` when they need none)."""
        if not needs or needs == {"none"}:
            return None
        shown = prefill_positions(prompt, needs)
        shown = np.arange(len(prompt)) if shown is None else shown
        have = [int(p) for p in shown if int(p) in self._prefill]
        self.known += len(have)
        self.missing += len(shown) - len(have)
        if not have:
            return None
        tokens = np.asarray(prompt, dtype=np.int64)
        prev = np.concatenate([[-1], tokens[:-1]])
        return Observation(tokens[have], prev[have], np.stack([self._prefill[p][0] for p in have]),
                           np.stack([self._prefill[p][1] for p in have]))

    def observation(self, tree: DraftTree, context_len: int) -> Observation | None:
        """What the pass over ``tree`` (drafted at ``context_len``) showed the learning
        sources, cut to the nodes the trace has rows for (``None`` if it has none)."""
        have = [(v, self._rows[key]) for v, key in enumerate(self._keys(tree, context_len)) if key in self._rows]
        self.known += len(have)
        self.missing += tree.num_nodes - len(have)
        if not have:
            return None
        nodes = np.asarray([v for v, _ in have], dtype=np.int64)
        prev = np.empty(tree.num_nodes, dtype=np.int64)
        prev[0] = self.full[context_len - 2] if context_len > 1 else -1
        prev[1:] = tree.tokens[tree.parents[1:]]
        index = np.full(tree.num_nodes, -1, dtype=np.int64)
        index[nodes] = np.arange(len(nodes))
        parents = np.where(tree.parents[nodes] >= 0, index[np.maximum(tree.parents[nodes], 0)], -1)
        return Observation(tree.tokens[nodes].astype(np.int64), prev[nodes], np.stack([r[0] for _, r in have]),
                           np.stack([r[1] for _, r in have]), parents)


def replay_sources(sources: Sequence[TokenSource], header: dict, steps: Sequence[dict]
                   ) -> tuple[list[TokenSource], RowBook | None]:
    """The sources a replay drives, and the rows that feed the learning ones.

    Context sources read the recorded text and are used as they are. If the trace
    recorded the target's rows (version 3), every other source is used as it is too,
    fed from them (:class:`RowBook`); otherwise it is replaced by a
    :class:`TraceSource`, which answers what the recorded source said."""
    if RowBook.has_rows(header, steps):
        return list(sources), RowBook(header, steps)
    return [s if isinstance(s, ContextNGramSource) else TraceSource(s.name, steps) for s in sources], None


@dataclass
class ReplayResult:
    """MAT of the replayed configuration next to the recorded run's; with
    ``replay(..., record=True)``, ``trace`` is the replay's own ``(header, steps)``
    in the trace format, what its sources said at each of its steps. ``calibration``
    is the replay's predicted-vs-realised acceptance table, in the form of
    :attr:`goose.engine.GenerationStats.calibration`: what the bench would report
    for the replayed configuration (for the recorded one, exactly what it did)."""

    mat: float
    forward_calls: int
    recorded_mat: float
    recorded_forward_calls: int
    trace: tuple[dict, list[dict]] | None = None
    rows_known: int = 0
    rows_missing: int = 0
    calibration: dict[str, dict[str, list[float]]] = field(default_factory=dict)

    @property
    def relative_error(self) -> float:
        return (self.mat - self.recorded_mat) / self.recorded_mat


def replay(path: str | Path, shaper: TreeShaper, sources: Sequence[TokenSource], budget: int,
           record: bool = False, rows: RowBook | None = None) -> ReplayResult:
    """Re-run decoding on the recorded greedy continuation: each step the shaper
    builds a tree (cut, as the decode loop cuts it, to what the token limit can
    still emit), and the accepted path is the longest one that follows the recorded
    tokens (what the greedy target chose), plus the bonus. Sources and shaper get
    the same lifecycle calls as in the decode loop; with ``rows``
    (:func:`replay_sources`), the learning sources are also shown the prefill and
    each pass, as far as the trace knows them (:attr:`ReplayResult.rows_missing`).
    ``record`` keeps what the sources proposed (:attr:`ReplayResult.trace`)."""
    header, _ = load_trace(path)
    prompt, tokens = header["prompt"], header["tokens"]
    full = prompt + tokens
    learns = [_watches(s) for s in sources]  # a recording wrapper watches every pass; its source may not
    recorder = TraceRecorder() if record else None
    if recorder is not None:
        sources = recorder.wrap(sources)
    watchers = [s for s, w in zip(sources, learns, strict=True) if w] if rows is not None else []
    if rows is not None:
        rows.known = rows.missing = 0
    hooks = [*sources, shaper]
    for h in hooks:
        h.begin(list(prompt))
    if watchers:
        assert rows is not None
        obs = rows.prefill_observation(prompt, {s.prefill_positions for s in watchers})
        for s in watchers if obs is not None else ():
            s.observe(obs)
    for h in hooks:  # prefill committed the first token
        h.commit(full[len(prompt) : len(prompt) + 1])
    pos, calls = len(prompt) + 1, 1
    stats = GenerationStats()
    limit = header.get("max_new_tokens") or len(tokens)  # a run that stopped at EOS had room left
    while pos < len(full):
        tree = shaper.shape(full[:pos], sources, budget)
        room = limit - (pos - len(prompt))  # as the decode loop cuts trees: the bonus takes one place
        if int(tree.depths.max()) > room - 1:
            tree = tree.truncated(room - 1)
        node, accepted = 0, []
        while pos + len(accepted) < len(full):
            child = tree.child_with_token(node, full[pos + len(accepted)])
            if child is None:
                break
            node = child
            accepted.append(child)
        end = pos + len(accepted)  # the last step may end the text: no bonus (count_step reads the accepted nodes)
        stats.count_step(tree, Verdict(tuple(accepted), tuple(full[pos:end]), full[end] if end < len(full) else -1))
        if recorder is not None:
            recorder.step({"context_len": pos, "accepted": len(accepted)})
        if watchers:  # as the decode loop: the pass is shown before the shaper's record
            assert rows is not None
            obs = rows.observation(tree, pos)
            for s in watchers if obs is not None else ():
                s.observe(obs)
        shaper.record(tree, accepted)
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
    known, missing = (rows.known, rows.missing) if rows is not None else (0, 0)
    return ReplayResult(len(tokens) / calls, calls, header["mat"], header["forward_calls"], trace, known, missing,
                        stats.calibration)


def replay_method(path: str | Path, method: str | None = None, budget: int | str | None = None) -> ReplayResult:
    """Replay a method (default: the recorded one) at ``budget`` (default: what the
    recorded run was asked for, ``auto`` included: its trees are then cut by the cost
    curve the trace recorded). Context sources are rebuilt exactly; every other
    source is fed the rows the trace recorded (version 3), or answers from the trace
    (:class:`TraceSource`, older traces) (:func:`replay_sources`). For a run whose
    sources are all context sources, and for the recorded method on a trace with rows,
    the replay reproduces the recorded run's forward calls."""
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
    sources, rows = replay_sources(d.sources, header, steps)
    return replay(path, d.shaper, sources, d.budget, rows=rows)
