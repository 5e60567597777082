"""Online estimates of conditional acceptance a(v), kept as Beta counts."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from ._tree import DraftTree

__all__ = ["AcceptanceEstimator", "tagged"]

TAG_SEP = "~"
"""Separates a node's key from its tag (:func:`tagged`)."""


def tagged(key: str, tag: str) -> str:
    """``key`` with the estimator tag ``tag`` (e.g. ``"rank0~split"``); an empty tag
    leaves the key as it is. The estimator pools nodes of one tag apart from the rest."""
    return f"{key}{TAG_SEP}{tag}" if tag else key


def _tag(key: str) -> str:
    return key.rpartition(TAG_SEP)[2] if TAG_SEP in key else ""


def _corrected(p: float, accepted: float, chances: float, expected: float, strength: float) -> float:
    """``p`` corrected by how its kind of node fared: ``accepted`` of ``chances``
    against ``expected`` acceptances, each side smoothed by ``strength``. Fewer
    acceptances than expected scale the acceptance rate down, more scale the failure
    rate down, so the estimate stays in [0, 1] without clipping."""
    if accepted <= expected:
        return p * (accepted + strength) / (expected + strength)
    return 1.0 - (1.0 - p) * (chances - accepted + strength) / (chances - expected + strength)


class AcceptanceEstimator:
    """Estimate of a(v) = P(v accepted | parent accepted) from what was accepted so far.

    A node arrives with its source's own confidence, the ``prior``. Two layers of
    Beta counts turn it into an estimate:

    1. **By confidence.** Nodes are grouped by source, tag (:func:`tagged`) and the
       bin of their prior (``bins`` equal bins of [0, 1]). A group that has seen ``m``
       opportunities (nodes whose parent was accepted), ``s`` of them accepted,
       predicts ``g = (s + w * prior) / (m + w)`` with ``w = prior_strength``: with no
       data the source is believed, with much data the group's realised rate wins.
       This keeps what the prior knows (a row probability of 0.9 is not one of 0.2)
       and fixes its scale, which a source rarely gets right.
    2. **By place.** Nodes are also bucketed by source, key and depth (capped at
       ``max_depth``). Let ``e`` sum the ``g`` of a bucket's ``m`` opportunities, of
       which ``s`` were accepted. A bucket accepted less often than its ``g`` said
       multiplies ``g`` by ``(s + w) / (e + w)``; one accepted more often multiplies
       the failure rate ``1 - g`` by ``(m - s + w) / (m - e + w)``. Deep context nodes,
       say, that are accepted more often than their confidence group says get lifted,
       and no estimate passes 1 (clipping at 1 had context nodes predicted 0.98 and
       accepted 0.87).

    Tags say how a node stands among its siblings (:class:`BestFirstShaper` tags
    ``agree`` when two sources offer the same token and ``split`` when another source
    offers a different one): only one child of a node can be accepted under greedy
    verification, so a recycled guess that contradicts a context copy is accepted far
    less often than one that stands alone (measured on SmolLM2: 0.09 against 0.25 at
    the same prior).

    With ``calibrate=True`` every estimate of a source is also corrected the same way
    by the source's record over all of its opportunities so far: accepted against
    the sum of the uncorrected estimates, smoothed by ``c = calibration_strength``
    (without data, no correction). Picking
    nodes by their estimate biases the counts: a group stays in the trees while a
    lucky streak lifts its estimate and drops out while an unlucky one lowers it, so
    the nodes that do get verified were predicted too high on average. The correction
    undoes that bias source by source.

    Example:
        >>> from goose.trees import DraftTree
        >>> est = AcceptanceEstimator(prior_strength=2.0)
        >>> tree = DraftTree([0, 5, 6], [-1, 0, 0], ["root", "ctx", "ctx"], [1.0, 0.5, 0.5], ["", "n3", "n3"])
        >>> est.record(tree, accepted=[1])          # node 1 accepted, node 2 not
        >>> est.predict("ctx", "n3", 1, prior=0.5)  # group: (1 + 2 * 0.5) / (2 + 2); place: (1 + 2) / (1 + 2)
        0.5
    """

    CARRY = 0.3
    """What a request's record weighs in the next one's when an estimator is carried from
    request to request (:meth:`carry`; the ``*-shared`` methods). Replays of two sets of 28
    recorded prompts, each estimator carried through its set in order: at 0.3 every
    method's node-weighted calibration error fell on both sets (``pld@auto`` 0.043 to 0.026
    and 0.048 to 0.028), and the replayed speed-ups of ``pld@auto``, ``goose@auto`` and
    ``best-first@auto`` rose by 0.5% to 1.5%; 0.2 to 0.5 gave speed-ups within 2% and
    single bins further off; 1 (the whole record) calibrated ``best-first@auto``'s context
    worse than a fresh estimator on one set (docs: Theory, section 6b)."""

    def __init__(self, prior_strength: float = 4.0, max_depth: int = 8, calibrate: bool = False,
                 calibration_strength: float = 5.0, bins: int = 10) -> None:
        if prior_strength <= 0:
            raise ValueError(f"prior_strength must be > 0, got {prior_strength}")
        if calibration_strength <= 0:
            raise ValueError(f"calibration_strength must be > 0, got {calibration_strength}")
        if bins < 1:
            raise ValueError(f"bins must be >= 1, got {bins}")
        self.prior_strength = float(prior_strength)
        self.max_depth = int(max_depth)
        self.calibrate = bool(calibrate)
        self.calibration_strength = float(calibration_strength)
        self.bins = int(bins)
        # layer 1, by (source, tag, prior bin): accepted and opportunities
        self._group_accepted: dict[tuple[str, str, int], float] = defaultdict(float)
        self._group_opportunities: dict[tuple[str, str, int], float] = defaultdict(float)
        # layer 2, by (source, key, depth): accepted, opportunities, and the layer-1 estimates they had
        self._accepted: dict[tuple[str, str, int], float] = defaultdict(float)
        self._opportunities: dict[tuple[str, str, int], float] = defaultdict(float)
        self._expected: dict[tuple[str, str, int], float] = defaultdict(float)
        self._source_accepted: dict[str, float] = defaultdict(float)
        self._source_chances: dict[str, float] = defaultdict(float)
        self._source_predicted: dict[str, float] = defaultdict(float)  # uncorrected estimates

    def carry(self, decay: float = CARRY) -> None:
        """Begin a new request from this record, every count weighed ``decay`` of itself:
        0 forgets it (a fresh estimator), 1 keeps it whole. A record carried this way
        from request to request weighs at most ``1 / (1 - decay)`` requests' worth, so
        each new text still moves the estimates within its own first steps."""
        if not 0.0 <= decay <= 1.0:
            raise ValueError(f"decay must lie in [0, 1], got {decay}")
        for counts in (self._group_accepted, self._group_opportunities, self._accepted, self._opportunities,
                       self._expected, self._source_accepted, self._source_chances, self._source_predicted):
            for key in counts:
                counts[key] *= decay

    def factor(self, source: str) -> float:
        """The record of ``source`` as one ratio, ``(accepted + c) / (predicted + c)``
        (1 without ``calibrate``): below 1 its estimates are scaled down by it."""
        if not self.calibrate:
            return 1.0
        c = self.calibration_strength
        return (self._source_accepted.get(source, 0.0) + c) / (self._source_predicted.get(source, 0.0) + c)

    def calibrated(self, source: str, estimate: float) -> float:
        """``estimate`` corrected by the record of ``source`` (as it is without ``calibrate``)."""
        if not self.calibrate:
            return estimate
        return _corrected(estimate, self._source_accepted.get(source, 0.0), self._source_chances.get(source, 0.0),
                          self._source_predicted.get(source, 0.0), self.calibration_strength)

    def _group(self, source: str, key: str, prior: float) -> tuple[str, str, int]:
        return (source, _tag(key), min(int(prior * self.bins), self.bins - 1))

    def _bucket(self, source: str, key: str, depth: int) -> tuple[str, str, int]:
        return (source, key, min(int(depth), self.max_depth))

    def _grouped(self, source: str, key: str, prior: float) -> float:
        g = self._group(source, key, prior)
        w = self.prior_strength
        return (self._group_accepted.get(g, 0.0) + w * prior) / (self._group_opportunities.get(g, 0.0) + w)

    def _uncorrected(self, source: str, key: str, depth: int, prior: float) -> float:
        b = self._bucket(source, key, depth)
        return _corrected(self._grouped(source, key, prior), self._accepted.get(b, 0.0),
                          self._opportunities.get(b, 0.0), self._expected.get(b, 0.0), self.prior_strength)

    def predict(self, source: str, key: str, depth: int, prior: float) -> float:
        """The estimate of a(v) for a node of ``source``/``key`` at ``depth`` whose
        source gave it confidence ``prior``."""
        return self.calibrated(source, self._uncorrected(source, key, depth, prior))

    def record(self, tree: DraftTree, accepted: Sequence[int]) -> None:
        """Count one verified tree; ``accepted`` lists the accepted node indices.
        Each node is counted under its ``priors`` entry, the source's own confidence."""
        acc = set(int(i) for i in accepted)
        acc.add(0)
        chances = []  # (node, source, key, depth, prior, layer-1 estimate, uncorrected estimate), before any update
        for v in range(1, tree.num_nodes):
            if int(tree.parents[v]) in acc:
                src, key, depth, prior = tree.sources[v], tree.keys[v], int(tree.depths[v]), float(tree.priors[v])
                chances.append((v, src, key, depth, prior, self._grouped(src, key, prior),
                                self._uncorrected(src, key, depth, prior)))
        for v, src, key, depth, prior, grouped, uncorrected in chances:
            hit = float(v in acc)
            g, b = self._group(src, key, prior), self._bucket(src, key, depth)
            self._group_opportunities[g] += 1.0
            self._group_accepted[g] += hit
            self._opportunities[b] += 1.0
            self._accepted[b] += hit
            self._expected[b] += grouped
            self._source_predicted[src] += uncorrected
            self._source_chances[src] += 1.0
            self._source_accepted[src] += hit

    def rates(self) -> dict[str, float]:
        """Conditional acceptance per source, pooled over keys and depths."""
        acc: dict[str, float] = defaultdict(float)
        opp: dict[str, float] = defaultdict(float)
        for (src, _, _), m in self._opportunities.items():
            opp[src] += m
        for (src, _, _), s in self._accepted.items():
            acc[src] += s
        return {s: acc[s] / opp[s] for s in opp if opp[s] > 0}
