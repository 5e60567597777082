"""Trace recording: what each source proposed at each step of a real greedy run.

Trace format (JSONL, one object per line):

* first line, ``{"type": "header", "version": 2, "prompt": [ids], "tokens": [new ids],
  "method": str, "budget": int (the loop's node budget), "requested": int | "auto" |
  null (what the method was asked for), "cost_curve": the curve ``auto`` cut trees
  by (``CostCurve.to_json()``) or null, "forward_calls": int, "mat": float,
  "sources": [names]}``;
* then one line per step, ``{"type": "step", "step": i, "context_len": L,
  "reference": [the next committed tokens, up to 32], "accepted": n, "proposals":
  {source: [{"query": [prev, token], "depth": d, "tokens": [[...], ...],
  "confidence": [[...], ...], "keys": [...]}, ...]}}`` -- every query the shaper made
  in that step (``query`` = the last two tokens of context + path; ``depth`` = path
  length) with the proposals it got.

In greedy mode the reference continuation (header ``prompt`` + ``tokens``) decides
acceptance, so a replay of context-only sources is exact (``sim.replay``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from ..sources import Observation, Proposal, TokenSource

__all__ = ["RecordingSource", "TraceRecorder"]


class RecordingSource(TokenSource):
    """Wraps a source and logs every query and answer into a recorder."""

    def __init__(self, inner: TokenSource, recorder: TraceRecorder) -> None:
        self.inner, self.recorder, self.name = inner, recorder, inner.name
        self.kind = inner.kind
        self.prefill_positions = inner.prefill_positions

    def begin(self, prompt: Sequence[int]) -> None:
        self.inner.begin(prompt)

    def commit(self, new_tokens: Sequence[int]) -> None:
        self.inner.commit(new_tokens)

    def end(self, tokens: Sequence[int]) -> None:
        self.inner.end(tokens)

    def abort(self, tokens: Sequence[int]) -> None:
        self.inner.abort(tokens)

    def observe(self, obs: Observation) -> None:
        self.inner.observe(obs)

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

    def wrap(self, sources: Sequence[TokenSource]) -> list[TokenSource]:
        return [RecordingSource(s, self) for s in sources]

    def log(self, source: str, query: list[int], depth: int, props: list[Proposal]) -> None:
        self._pending.setdefault(source, []).append({
            "query": query, "depth": depth, "tokens": [list(p.tokens) for p in props],
            "confidence": [list(p.confidence) for p in props], "keys": [p.key for p in props],
        })

    def step(self, info: dict) -> None:
        """The decode loop's per-step callback."""
        self.steps.append({"type": "step", "step": len(self.steps), "context_len": info["context_len"],
                           "accepted": info["accepted"], "proposals": self._pending})
        self._pending = {}

    def write(self, path: str | Path, prompt: Sequence[int], tokens: Sequence[int], method: str,
              budget: int, forward_calls: int, sources: Sequence[str], requested: int | str | None = None,
              cost_curve: dict | None = None) -> Path:
        path = Path(path)
        full = list(prompt) + list(tokens)
        header = {"type": "header", "version": 2, "prompt": list(prompt), "tokens": list(tokens),
                  "method": method, "budget": budget, "requested": requested, "cost_curve": cost_curve,
                  "forward_calls": forward_calls, "mat": len(tokens) / forward_calls, "sources": list(sources)}
        with path.open("w") as f:
            f.write(json.dumps(header) + "\n")
            for s in self.steps:
                ref = full[s["context_len"] : s["context_len"] + 32]
                f.write(json.dumps(s | {"reference": ref}) + "\n")
        return path
