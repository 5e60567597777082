"""What one generation did: counters, timings and the emitted tokens."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ..trees import DraftTree
from ..verify import Verdict

__all__ = ["CALIBRATION_BINS", "GenerationResult", "GenerationStats"]

CALIBRATION_BINS = 10
"""Equal-width confidence bins of :attr:`GenerationStats.calibration`."""


@dataclass
class GenerationStats:
    """Counters of one generation (times in seconds).

    The time split of a step: ``draft`` (sources and shaper build the tree, and the
    tree check), ``forward`` (the target pass), ``verify``, ``commit`` (KV compaction,
    the sources' and shaper's updates, streaming) and ``other``: the rest of the
    generation's wall time (setup, the loop's own bookkeeping). ``prefill`` holds the
    prompt pass and the first token."""

    new_tokens: int = 0
    forward_calls: int = 0  # prefill included
    steps: int = 0
    accept_lengths: list[int] = field(default_factory=list)  # draft tokens accepted per step
    tree_sizes: list[int] = field(default_factory=list)
    drafted: dict[str, int] = field(default_factory=dict)  # per source
    accepted: dict[str, int] = field(default_factory=dict)  # per source, before cutting at EOS/limit
    opportunities: dict[str, int] = field(default_factory=dict)
    calibration: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    """Predicted vs realised acceptance, per ``"source/kind"``: over the nodes whose
    parent was accepted (each one's chance to be accepted), binned by the confidence
    the node carried (``CALIBRATION_BINS`` = 10 equal bins of [0, 1]): ``n`` nodes,
    the sum of their ``predicted`` confidences and the number ``accepted``."""
    passes: list[tuple[int, int, float]] = field(default_factory=list)
    """Per tree pass: ``(nodes, context, seconds)``, the tokens passed (root included),
    the committed tokens before it and the target pass's time: what a cost curve's
    ``c(nodes, context)`` predicts (``goose bench`` checks the one ``auto`` read)."""
    time_prefill: float = 0.0
    time_draft: float = 0.0
    time_forward: float = 0.0
    time_verify: float = 0.0
    time_commit: float = 0.0
    time_other: float = 0.0
    time_total: float = 0.0
    lossless: bool = True

    def count_step(self, tree: DraftTree, verdict: Verdict) -> None:
        """One verified tree: its size, the accepted length, and per source the nodes
        drafted, the opportunities (an accepted node or the root with a child from
        the source) and the accepted nodes (before any EOS or length cut).

        Plain Python over the tree's few nodes: this runs once per step, and numpy's
        per-call cost on arrays of a handful of entries was most of its time."""
        self.forward_calls += 1
        self.steps += 1
        self.accept_lengths.append(len(verdict.accepted))
        self.tree_sizes.append(tree.size)
        sources, parents = tree.sources, tree.parents.tolist()
        for s in sources[1:]:
            self.drafted[s] = self.drafted.get(s, 0) + 1
        walk = (0, *verdict.accepted)
        taken = set(walk)
        self._count_calibration(tree, parents, taken)
        for j, u in enumerate(walk):
            for s in {sources[c] for c in tree.children(u)}:
                self.opportunities[s] = self.opportunities.get(s, 0) + 1
            if j + 1 < len(walk):
                s = sources[walk[j + 1]]
                self.accepted[s] = self.accepted.get(s, 0) + 1

    def _count_calibration(self, tree: DraftTree, parents: list[int], taken: set[int]) -> None:
        """Count each node whose parent was accepted (``taken``) in its confidence bin
        (a tree's confidences lie in [0, 1]: :class:`DraftTree` checks them)."""
        confidences = tree.confidences.tolist()
        for v in range(1, len(parents)):
            if parents[v] not in taken:
                continue
            conf = confidences[v]
            b = min(int(conf * CALIBRATION_BINS), CALIBRATION_BINS - 1)
            cell = self.calibration.get(key := f"{tree.sources[v]}/{tree.kinds[v]}")
            if cell is None:
                cell = self.calibration[key] = {k: [0.0] * CALIBRATION_BINS for k in ("n", "predicted", "accepted")}
            cell["n"][b] += 1
            cell["predicted"][b] += conf
            cell["accepted"][b] += v in taken

    def add_times(self, marks: Sequence[float], nodes: int | None = None, context: int | None = None) -> None:
        """A step's clock marks: start, tree shaped, forward done, verified, end; with
        the pass's ``nodes`` and ``context``, the pass goes into :attr:`passes` too."""
        t0, t1, t2, t3, t4 = marks
        if nodes is not None and context is not None:
            self.passes.append((int(nodes), int(context), t2 - t1))
        self.time_draft += t1 - t0
        self.time_forward += t2 - t1
        self.time_verify += t3 - t2
        self.time_commit += t4 - t3

    def finish(self, new_tokens: int, total: float) -> None:
        """The generation's emitted token count and total wall time; the part of the
        time the step split does not cover becomes ``other``."""
        self.new_tokens, self.time_total = new_tokens, total
        self.time_other = max(0.0, total - self.time_prefill - self.time_draft - self.time_forward
                              - self.time_verify - self.time_commit)

    def time_split(self) -> dict[str, float]:
        """Seconds per part of the generation (``prefill``, ``draft``, ``forward``,
        ``verify``, ``commit``, ``other``, ``total``) with the counts to average them
        by: ``steps`` (tree passes) and ``nodes`` (draft nodes passed, roots excluded)."""
        return {"prefill": self.time_prefill, "draft": self.time_draft, "forward": self.time_forward,
                "verify": self.time_verify, "commit": self.time_commit, "other": self.time_other,
                "total": self.time_total, "steps": self.steps, "nodes": int(sum(self.tree_sizes))}

    @property
    def mat(self) -> float:
        """New tokens per target forward call, prefill included."""
        return self.new_tokens / self.forward_calls if self.forward_calls else 0.0

    @property
    def tokens_per_s(self) -> float:
        return self.new_tokens / self.time_total if self.time_total else 0.0

    def accept_rates(self) -> dict[str, dict[str, float]]:
        """Per source: accepted per drafted node, and per opportunity (an accepted
        node or root that had at least one child from the source)."""
        out = {}
        for s, d in self.drafted.items():
            out[s] = {
                "per_node": self.accepted.get(s, 0) / d if d else 0.0,
                "per_opportunity": self.accepted.get(s, 0) / self.opportunities[s]
                if self.opportunities.get(s) else 0.0,
                "drafted": d,
                "accepted": self.accepted.get(s, 0),
            }
        return out

    def to_json(self) -> dict:
        loop = self.time_draft + self.time_verify + self.time_commit + self.time_other
        return {
            "new_tokens": self.new_tokens,
            "forward_calls": self.forward_calls,
            "mat": self.mat,
            "tokens_per_s": self.tokens_per_s,
            "steps": self.steps,
            "mean_tree_size": float(np.mean(self.tree_sizes)) if self.tree_sizes else 0.0,
            "accept_lengths": self.accept_lengths,
            "accept": self.accept_rates(),
            "time": self.time_split(),
            "calibration": self.calibration,
            "passes": [list(p) for p in self.passes],
            "overhead_vs_forward": loop / self.time_forward if self.time_forward else 0.0,
            "lossless": self.lossless,
        }


@dataclass
class GenerationResult:
    """Output of :func:`decode` / :func:`goose.generate`.

    Attributes:
        tokens: the new token ids (EOS included when it stopped the generation).
        text: their decoded text (filled by callers that have a tokenizer).
        stats: counters and timings.
        kinds: per new token, the label of the tree node it came from (``"spine"`` or
            ``"branch"``, :attr:`DraftTree.kinds`), or ``"bonus"`` (the target's own token).
        finish_reason: why it stopped: ``"eos"`` (an EOS token, emitted last),
            ``"length"`` (``max_new_tokens`` reached) or ``"context"`` (the sequence
            filled the model's context window); ``None`` for a result not made by
            :func:`decode`.
    """

    tokens: list[int]
    stats: GenerationStats
    kinds: list[str] = field(default_factory=list)
    text: str = ""
    finish_reason: str | None = None
