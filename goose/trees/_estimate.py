"""Online estimates of conditional acceptance a(v), kept as Beta counts."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from ._tree import DraftTree

__all__ = ["AcceptanceEstimator"]


class AcceptanceEstimator:
    """Beta-posterior estimate of a(v) = P(v accepted | parent accepted).

    Nodes are bucketed by (source, key, depth) with depth capped at ``max_depth``.
    A bucket that has seen ``m`` opportunities (nodes whose parent was accepted) of
    which ``s`` were accepted predicts ``(s + w * prior) / (m + w)``, where ``prior``
    is the proposing source's own confidence and ``w = prior_strength``: with no
    data the source is believed, with much data the counts win.

    Example:
        >>> from goose.trees import DraftTree
        >>> est = AcceptanceEstimator(prior_strength=2.0)
        >>> tree = DraftTree([0, 5, 6], [-1, 0, 0], ["root", "ctx", "ctx"], keys=["", "n3", "n3"])
        >>> est.record(tree, accepted=[1])          # node 1 accepted, node 2 not
        >>> est.predict("ctx", "n3", 1, prior=0.5)  # (1 + 2 * 0.5) / (2 + 2)
        0.5
    """

    def __init__(self, prior_strength: float = 4.0, max_depth: int = 8) -> None:
        if prior_strength <= 0:
            raise ValueError(f"prior_strength must be > 0, got {prior_strength}")
        self.prior_strength = float(prior_strength)
        self.max_depth = int(max_depth)
        self._accepted: dict[tuple[str, str, int], float] = defaultdict(float)
        self._opportunities: dict[tuple[str, str, int], float] = defaultdict(float)

    def _bucket(self, source: str, key: str, depth: int) -> tuple[str, str, int]:
        return (source, key, min(int(depth), self.max_depth))

    def predict(self, source: str, key: str, depth: int, prior: float) -> float:
        """Posterior mean of a(v) for a node of ``source``/``key`` at ``depth``."""
        b = self._bucket(source, key, depth)
        w = self.prior_strength
        return (self._accepted.get(b, 0.0) + w * prior) / (self._opportunities.get(b, 0.0) + w)

    def record(self, tree: DraftTree, accepted: Sequence[int]) -> None:
        """Count one verified tree; ``accepted`` lists the accepted node indices."""
        acc = set(int(i) for i in accepted)
        acc.add(0)
        for v in range(1, tree.num_nodes):
            if int(tree.parents[v]) in acc:
                b = self._bucket(tree.sources[v], tree.keys[v], int(tree.depths[v]))
                self._opportunities[b] += 1.0
                if v in acc:
                    self._accepted[b] += 1.0

    def rates(self) -> dict[str, float]:
        """Conditional acceptance per source, pooled over keys and depths."""
        acc: dict[str, float] = defaultdict(float)
        opp: dict[str, float] = defaultdict(float)
        for (src, _, _), m in self._opportunities.items():
            opp[src] += m
        for (src, _, _), s in self._accepted.items():
            acc[src] += s
        return {s: acc[s] / opp[s] for s in opp if opp[s] > 0}
