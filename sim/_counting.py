"""What recorded steps show, counted: the chain's hazards, the recycled source's rank
hits by place and what its rows look like. :func:`sim.fit_model` turns the counts
into rates."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ._models import RANKED, ROW_CLASSES, WIDE

__all__ = ["Counts", "on_path", "query_row", "ranked_queries", "recycled_queries", "row_class", "row_of", "shrink",
           "sub_one"]

DEPTHS = 32  # a trace's reference continuation holds 32 tokens
MAX_CHAIN = 64


@dataclass
class Counts:
    """What one state's steps showed (``goose generate --trace`` steps)."""

    ranks: int
    steps: int = 0
    matched: int = 0
    trials: np.ndarray = field(default_factory=lambda: np.zeros(DEPTHS + 1))  # [depth] chain hazards
    hits: np.ndarray = field(default_factory=lambda: np.zeros(DEPTHS + 1))
    nodes: dict = field(default_factory=dict)  # place -> [rank] nodes where rank j counted
    rank_hits: dict = field(default_factory=dict)  # place -> [rank] rank j was the next token
    spine_nodes: int = 0
    overlaps: int = 0
    chain_lengths: np.ndarray = field(default_factory=lambda: np.zeros(MAX_CHAIN + 1))  # [length] matched steps
    rows: dict = field(default_factory=dict)  # place -> [row class] nodes of that class (ROW_CLASSES)
    row_nodes: dict = field(default_factory=dict)  # (place, row class) -> [rank] nodes where rank j counted
    row_hits: dict = field(default_factory=dict)  # (place, row class) -> [rank] rank j was the next token
    ranked: dict = field(default_factory=dict)  # place -> [rank group, taken, class] nodes below one on the text

    def add_node(self, place: str, cands: Sequence[int], spine: int | None, nxt: int,
                 confidences: Sequence[float] = ()) -> None:
        """Count one recycled query at a node on the text."""
        row = row_of(cands, confidences)
        self.rows.setdefault(place, np.zeros(len(ROW_CLASSES)))[row] += 1
        nodes = self.nodes.setdefault(place, np.zeros(self.ranks))
        hits = self.rank_hits.setdefault(place, np.zeros(self.ranks))
        row_nodes = self.row_nodes.setdefault((place, row), np.zeros(self.ranks))
        row_hits = self.row_hits.setdefault((place, row), np.zeros(self.ranks))
        for j in range(self.ranks):
            tok = cands[j] if j < len(cands) else None
            if spine is not None and tok == spine:
                continue  # the spine token itself: one node, counted with the chain
            for n, h in ((nodes, hits), (row_nodes, row_hits)):
                n[j] += 1
                h[j] += tok == nxt
        if spine is not None:
            self.spine_nodes += 1
            self.overlaps += bool(cands) and cands[0] == spine

    def add_row(self, place: str, rank: int, taken: bool, cands: Sequence[int], confidences: Sequence[float]) -> None:
        """Count the row of a node whose parent is on the text, by the node's rank in
        its parent's row and whether the text took it."""
        table = self.ranked.setdefault(place, np.zeros((RANKED, 2, len(ROW_CLASSES))))
        table[min(rank, RANKED - 1), int(taken), row_of(cands, confidences)] += 1


def row_of(cands: Sequence[int], confidences: Sequence[float]) -> int:
    """The row class of a query that proposed ``cands`` with ``confidences``."""
    return 0 if not cands else row_class(confidences) if len(confidences) else len(ROW_CLASSES) - 1


def row_class(confidences: Sequence[float]) -> int:
    """The class (index into :data:`ROW_CLASSES`, never "none") of a recycled row whose
    candidates had ``confidences``: how many are at :data:`WIDE` or above, none or one
    counted as one, three or more as wide."""
    return min(max(sum(float(c) >= WIDE for c in confidences), 1), len(ROW_CLASSES) - 1)


def on_path(query: Sequence[int], full: Sequence[int], at: int, depth: int) -> bool:
    """Whether the node a query was made at lies on the committed continuation: its
    last two tokens (context + path) are those of the text (a path that left the text
    and came back to the same two tokens is counted too; that is rare)."""
    want = list(full[max(at + depth - 2, 0) : at + depth])
    return list(query) == want


def recycled_queries(step: dict, recycled: str | None, full: Sequence[int], chain: Sequence[int]):  # noqa: ANN201
    """The recycled source's queries of a recorded step at nodes on the committed
    text, the first per depth: ``(query, depth, place, spine)``, ``place`` one of
    :data:`PLACES` and ``spine`` the context chain's token below the node where the
    node is on the chain (else ``None``); ``chain`` is the step's root chain."""
    ref, at, seen = step["reference"], step["context_len"], set()
    for q in step["proposals"].get(recycled, []):
        d = q["depth"]
        if d in seen or d >= len(ref) or not on_path(q["query"], full, at, d):
            continue
        seen.add(d)
        on_chain = bool(chain) and list(chain[:d]) == list(ref[:d]) and len(chain) >= d
        place = ("root-match" if chain else "root") if d == 0 else "spine" if on_chain else "branch"
        yield q, d, place, (chain[d] if on_chain and len(chain) > d else None)


def query_row(q: dict, ranks: int) -> tuple[list[int], list[float]]:
    """A recorded query's first ``ranks`` candidates, and the confidences of all of its
    candidates (what its row class is read from)."""
    tokens = [t[0] for t in q["tokens"] if t]
    return tokens[:ranks], [c[0] for c in q.get("confidence") or [] if c]


def ranked_queries(step: dict, recycled: str | None, full: Sequence[int], chain: Sequence[int]):  # noqa: ANN201
    """The recycled queries of a recorded step at nodes whose parent is on the committed
    text, taken or not, as ``(query, place, rank, taken)``: ``rank`` the node's place in
    its parent's row (0 for a token the row did not hold, such as a chain token),
    ``place`` ``"spine"`` for a node of the root's chain, else ``"branch"``, ``taken``
    whether the text goes through the node."""
    queries = step["proposals"].get(recycled, [])
    parents = {(q["depth"], q["query"][-1]): q for q in queries}
    at = step["context_len"]
    for q in queries:
        d = q["depth"]
        parent = parents.get((d - 1, q["query"][-2])) if d > 0 and len(q["query"]) > 1 else None
        if parent is None or not on_path(parent["query"], full, at, d - 1) or at + d - 1 >= len(full):
            continue
        row = [t[0] for t in parent["tokens"] if t]
        token = q["query"][-1]
        rank = row.index(token) if token in row else 0
        on_chain = d <= len(chain) and token == chain[d - 1] and (d == 1 or q["query"][-2] == chain[d - 2])
        yield q, ("spine" if on_chain else "branch"), rank, token == full[at + d - 1]


def shrink(hits: np.ndarray, trials: np.ndarray, prior: np.ndarray, strength: float) -> np.ndarray:
    """Beta-smoothed rates: ``(hits + k * prior) / (trials + k)`` (``prior`` where
    there is nothing to go on)."""
    hits, trials, prior = np.asarray(hits, float), np.asarray(trials, float), np.asarray(prior, float)
    n = trials + strength
    return np.where(n > 0, (hits + strength * prior) / np.where(n > 0, n, 1.0), prior)


def sub_one(b: np.ndarray) -> tuple[float, ...]:
    """Probabilities in [0, 1] that sum to at most 1 (scaled down where they would not)."""
    clipped = tuple(float(x) for x in np.clip(b, 0.0, 1.0))
    return tuple(x * min(1.0, 1.0 / max(sum(clipped), 1e-12)) for x in clipped)
