"""Greedy verification: follow the target's argmax through the tree."""

from __future__ import annotations

import torch

from ..trees import DraftTree
from ._base import Verdict, Verifier, check_logits, sample_and_match

__all__ = ["GreedyVerifier"]


class GreedyVerifier(Verifier):
    """Lossless for greedy decoding: accepted tokens and bonus are the argmax.

    Ties go to the lowest token id (``torch.argmax``), as in plain greedy decoding.

    Example:
        >>> import torch
        >>> from goose.trees import DraftTree
        >>> tree = DraftTree([9, 4, 5, 6], [-1, 0, 0, 2])
        >>> logits = torch.zeros(4, 10); logits[0, 5] = logits[2, 6] = logits[3, 1] = 1
        >>> GreedyVerifier().verify(tree, logits).emitted
        (5, 6, 1)
    """

    argmax_only = True

    def verify(self, tree: DraftTree, logits: torch.Tensor) -> Verdict:
        check_logits(tree, logits)
        pred = logits.argmax(dim=-1).tolist()  # [num_nodes]
        return sample_and_match(tree, pred.__getitem__)
