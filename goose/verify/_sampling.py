"""Lossless sampling verification for deterministic drafts (sample-and-match)."""

from __future__ import annotations

import numpy as np
import torch

from ..trees import DraftTree
from ._base import Verdict, Verifier, check_logits, sample_and_match
from ._bounded import BoundedLogits, processed_probs, sample_bounded, sample_processed
from ._multidraft import TorchRandomness, rejection_walk, traversal_walk
from ._params import process_logits

__all__ = ["RejectionVerifier", "SamplingVerifier", "TraversalVerifier"]


class SamplingVerifier(Verifier):
    """Lossless sampling for deterministic drafts.

    At each visited node draw ``y ~ p`` (the processed target distribution at that
    node); if a child carries ``y``, accept it and continue, else emit ``y`` as the
    bonus. The emitted tokens are then an ancestral sample of the target: the law
    of plain sampling, exactly (proof in docs/theory). Only visited nodes are
    processed and sampled. It ignores draft distributions, so it is lossless only on
    trees without drawn nodes: :meth:`verify` refuses a tree that has some (use
    :class:`RejectionVerifier` or :class:`TraversalVerifier`).

    Args:
        temperature: > 0.
        top_k: keep the k most likely tokens (0: off).
        top_p: nucleus mass in (0, 1] (1: off).
        generator: the ``torch.Generator`` all draws come from (seed it to reproduce).

    Example:
        >>> import torch
        >>> from goose.trees import DraftTree
        >>> v = SamplingVerifier(temperature=0.8, generator=torch.Generator().manual_seed(0))
        >>> tree = DraftTree([0, 1], [-1, 0])
        >>> v.verify(tree, torch.tensor([[0.0, 50.0, 0.0], [0.0, 0.0, 50.0]])).emitted
        (1, 2)
    """

    def __init__(
        self,
        temperature: float = 1.0,
        top_k: int = 0,
        top_p: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> None:
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0 (use GreedyVerifier for 0), got {temperature}")
        if top_k < 0:
            raise ValueError(f"top_k must be >= 0, got {top_k}")
        if not 0 < top_p <= 1:
            raise ValueError(f"top_p must lie in (0, 1], got {top_p}")
        self.temperature = float(temperature)
        self.top_k = int(top_k)
        self.top_p = float(top_p)
        self.generator = generator if generator is not None else torch.Generator().manual_seed(0)

    def node_probs(self, logits: torch.Tensor) -> torch.Tensor:
        """``[n, vocab]`` processed target distribution ``p`` at each row."""
        return process_logits(logits, self.temperature, self.top_k, self.top_p).softmax(dim=-1)

    reads_q = False
    """Whether the verifier reads the draft distributions trees carry (and may verify drawn nodes)."""
    reads_bounds = True
    """Whether :meth:`verify` takes :class:`~goose.verify.BoundedLogits` (approximate
    logits, exact on demand); the decode loop then asks a target that can for them."""

    def row_probs(self, row: torch.Tensor) -> np.ndarray:
        """``[vocab]`` float64 processed target distribution of one row of logits (the
        nucleus found without a full sort where it can be: :func:`processed_probs`)."""
        ids, probs = processed_probs(row.double().cpu(), self.temperature, self.top_k, self.top_p)
        out = np.zeros(row.shape[-1])
        out[ids.numpy()] = probs.numpy()
        return out

    def verify(self, tree: DraftTree, logits: torch.Tensor | BoundedLogits) -> Verdict:
        check_logits(tree, logits)
        if tree.has_draws:
            raise ValueError(f"{type(self).__name__} is lossless only for deterministic drafts, and this tree has "
                             "children drawn from q: verify it with RejectionVerifier or TraversalVerifier")
        t, k, p, gen = self.temperature, self.top_k, self.top_p, self.generator

        def draw(node: int) -> int:
            if isinstance(logits, BoundedLogits):
                return sample_bounded(logits, node, gen, t, k, p)
            return sample_processed(logits[node].to(gen.device), gen, t, k, p)

        return sample_and_match(tree, draw)


class _QVerifier(SamplingVerifier):
    """A verifier of drawn trees: its ``walk`` (``(tree, p_at, rng) -> Verdict``) on
    float64 rows of the processed target distribution."""

    reads_q = True
    reads_bounds = False
    walk = staticmethod(rejection_walk)

    def verify(self, tree: DraftTree, logits: torch.Tensor) -> Verdict:
        check_logits(tree, logits)
        rows: dict[int, np.ndarray] = {}

        def p_at(node: int) -> np.ndarray:  # [vocab] float64, processed like plain sampling
            if node not in rows:
                rows[node] = self.row_probs(logits[node])
            return rows[node]

        return self.walk(tree, p_at, TorchRandomness(self.generator))


class RejectionVerifier(_QVerifier):
    """Lossless for trees whose children were drawn from ``q`` (and deterministic
    ones): recursive rejection sampling without replacement, top-down
    (:func:`goose.verify.rejection_walk`). Same arguments as :class:`SamplingVerifier`.

    Example:
        >>> import numpy as np, torch
        >>> from goose.trees import DraftTree
        >>> tree = DraftTree([0, 1], [-1, 0], q={0: (np.array([1, 2]), np.array([0.5, 0.5]))}, drawn=[False, True])
        >>> v = RejectionVerifier(generator=torch.Generator().manual_seed(0))
        >>> v.verify(tree, torch.tensor([[0.0, 50.0, 0.0], [0.0, 0.0, 50.0]])).emitted
        (1, 2)
    """

    walk = staticmethod(rejection_walk)


class TraversalVerifier(_QVerifier):
    """Lossless for trees whose children were drawn from ``q`` (and deterministic
    ones): Traversal Verification, leaf to root (:func:`goose.verify.traversal_walk`);
    it accepts at least as much as :class:`RejectionVerifier` on the same trees. Same
    arguments as :class:`SamplingVerifier`."""

    walk = staticmethod(traversal_walk)
