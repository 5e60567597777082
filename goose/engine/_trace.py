"""Trace recording: what each source proposed at each step of a real greedy run.

Trace format (JSONL, one object per line):

* first line, ``{"type": "header", "version": 3, "prompt": [ids], "tokens": [new ids],
  "method": str, "budget": int (the loop's node budget), "requested": int | "auto" |
  null (what the method was asked for), "cost_curve": the curve ``auto`` cut trees
  by (``CostCurve.to_json()``) or null, "forward_calls": int, "mat": float,
  "sources": [names], "prefill": rows or null, "max_new_tokens": the run's token limit
  or null}``;
* then one line per step, ``{"type": "step", "step": i, "context_len": L,
  "reference": [the next committed tokens, up to 32], "accepted": n, "proposals":
  {source: [{"query": [prev, token], "depth": d, "tokens": [[...], ...],
  "confidence": [[...], ...], "keys": [...]}, ...]}, "verified": rows or null}`` --
  every query the shaper made in that step (``query`` = the last two tokens of
  context + path; ``depth`` = path length) with the proposals it got.

Rows (version 3) are what the target showed the learning sources
(:class:`goose.sources.Observation`): ``{"tokens": [...], "prev": [...], "ids":
[[top-k ids], ...], "probs": [[their probabilities], ...]}`` per processed position,
plus ``"parents"`` for a step's tree (node order, ``-1`` for the root) and
``"positions"`` for the prefill (the prompt positions shown). Every node of every
verified tree has its row, not only the accepted path, so a replay can rebuild a
learning source (Token Recycling's table) wherever the replayed trees meet the
recorded ones (``sim.RowBook``). Probabilities are written as the shortest decimals
that read back to the same float32.

In greedy mode the reference continuation (header ``prompt`` + ``tokens``) decides
acceptance, so a replay of context-only sources is exact (``sim.replay``), and so is a
replay of the recorded method with its learning sources fed from the rows.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..sources import Observation, Proposal, TokenSource
from ._loop import prefill_positions

__all__ = ["RecordingSource", "TraceRecorder"]


TRACE_VERSION = 3
"""The trace format :class:`TraceRecorder` writes (module docstring)."""


def rows_json(obs: Observation) -> dict:
    """An observation as trace rows (``parents`` for a tree pass)."""
    out = {"tokens": obs.tokens.tolist(), "prev": obs.prev_tokens.tolist(), "ids": obs.topk_ids.tolist(),
           "probs": [[float(str(p)) for p in row] for row in np.asarray(obs.topk_probs, dtype=np.float32)]}
    if obs.parents is not None:
        out["parents"] = np.asarray(obs.parents).tolist()
    return out


class RecordingSource(TokenSource):
    """Wraps a source and logs every query and answer, and every pass the target
    shows it, into a recorder. Every recording source watches the passes, so a trace
    holds the rows of every verified node whatever the method; at the prefill it asks
    for the last position of each token pair of the prompt (or all, if its source
    does), which covers what any of goose's learning sources would be shown there."""

    def __init__(self, inner: TokenSource, recorder: TraceRecorder) -> None:
        self.inner, self.recorder, self.name = inner, recorder, inner.name
        self.kind = inner.kind
        self._watches = type(inner).observe is not TokenSource.observe
        self._need = inner.prefill_positions if self._watches else "none"
        self.prefill_positions = "all" if self._need == "all" else "last-pair"

    def begin(self, prompt: Sequence[int]) -> None:
        self.recorder.begin(prompt)
        self.inner.begin(prompt)

    def commit(self, new_tokens: Sequence[int]) -> None:
        self.inner.commit(new_tokens)

    def end(self, tokens: Sequence[int]) -> None:
        self.inner.end(tokens)

    def abort(self, tokens: Sequence[int]) -> None:
        self.inner.abort(tokens)

    def observe(self, obs: Observation) -> None:
        self.recorder.observe(obs)
        if not self._watches or (obs.parents is None and self._need == "none"):
            return  # the loop would not have shown the source this pass
        self.inner.observe(self._needed(obs))

    def _needed(self, obs: Observation) -> Observation:
        """A prefill observation cut to the positions the inner source asked for (the
        last position of each token is the last of one of its pairs)."""
        if obs.parents is not None or self.prefill_positions == self._need:
            return obs
        shown = self.recorder.prefill_shown()
        keep = np.searchsorted(shown, prefill_positions(self.recorder.prompt, {self._need}))
        return Observation(obs.tokens[keep], obs.prev_tokens[keep], obs.topk_ids[keep], obs.topk_probs[keep])

    def propose(self, context: Sequence[int], path: Sequence[int] = ()) -> list[Proposal]:
        props = self.inner.propose(context, path)
        text = list(context[-2:]) + list(path)
        self.recorder.log(self.name, [int(t) for t in text[-2:]], len(path), props)
        return props


class TraceRecorder:
    """Collects a trace during :func:`goose.engine.decode` and writes it as JSONL.

    Use :meth:`wrap` on the sources and pass :meth:`step` as the loop's ``recorder``.
    """

    def __init__(self) -> None:
        self.steps: list[dict] = []
        self._pending: dict[str, list[dict]] = {}
        self._seen: Observation | None = None
        self._needs: set[str] = set()
        self.prefill: dict | None = None
        self.prompt: list[int] = []

    def wrap(self, sources: Sequence[TokenSource]) -> list[TokenSource]:
        wrapped = [RecordingSource(s, self) for s in sources]
        self._needs |= {w.prefill_positions for w in wrapped}
        return wrapped

    def begin(self, prompt: Sequence[int]) -> None:
        """The prompt of the run (the decode loop's sources hear it too)."""
        self.prompt = [int(t) for t in prompt]

    def prefill_shown(self) -> np.ndarray:
        """The prompt positions the prefill showed the recording sources (the decode
        loop asks for what all of them need)."""
        shown = prefill_positions(self.prompt, self._needs)
        return np.arange(len(self.prompt)) if shown is None else shown

    def observe(self, obs: Observation) -> None:
        """Keep a pass's rows once, however many recording sources are shown it."""
        if obs is self._seen:
            return
        self._seen = obs
        rows = rows_json(obs)
        if obs.parents is None:
            rows["positions"] = self.prefill_shown().tolist()
            self.prefill = rows
        elif self.steps:  # the loop reports a step before it shows the pass to the sources
            self.steps[-1]["verified"] = rows

    def log(self, source: str, query: list[int], depth: int, props: list[Proposal]) -> None:
        self._pending.setdefault(source, []).append({
            "query": query, "depth": depth, "tokens": [list(p.tokens) for p in props],
            "confidence": [list(p.confidence) for p in props], "keys": [p.key for p in props],
        })

    def step(self, info: dict) -> None:
        """The decode loop's per-step callback."""
        self.steps.append({"type": "step", "step": len(self.steps), "context_len": info["context_len"],
                           "accepted": info["accepted"], "proposals": self._pending, "verified": None})
        self._pending = {}

    def write(self, path: str | Path, prompt: Sequence[int], tokens: Sequence[int], method: str,
              budget: int, forward_calls: int, sources: Sequence[str], requested: int | str | None = None,
              cost_curve: dict | None = None, max_new_tokens: int | None = None) -> Path:
        path = Path(path)
        full = list(prompt) + list(tokens)
        header = {"type": "header", "version": TRACE_VERSION, "prompt": list(prompt), "tokens": list(tokens),
                  "method": method, "budget": budget, "requested": requested, "cost_curve": cost_curve,
                  "forward_calls": forward_calls, "mat": len(tokens) / forward_calls, "sources": list(sources),
                  "prefill": self.prefill, "max_new_tokens": max_new_tokens}
        with path.open("w") as f:
            f.write(json.dumps(header) + "\n")
            for s in self.steps:
                ref = full[s["context_len"] : s["context_len"] + 32]
                f.write(json.dumps(s | {"reference": ref}) + "\n")
        return path
