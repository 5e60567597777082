"""LOSSY loose verification (FLy-style): accepts some drafts the target disagrees with."""

from __future__ import annotations

import torch

from ..trees import DraftTree
from ._base import Verdict, Verifier, check_logits

__all__ = ["LooseVerifier"]


class LooseVerifier(Verifier):
    """**Lossy.** Greedy verification loosened the FLy way; never a default.

    Along every root-to-leaf path, a draft token that differs from the target's
    argmax is still accepted when (a) the target was unsure there (entropy of its
    top-3 probabilities >= ``entropy_threshold``) and (b) the target then agrees
    exactly with the next ``window - 1`` draft tokens. The longest accepted path wins;
    the bonus is the target's argmax after it. Output can differ from plain greedy
    decoding: results made with it are labelled lossy.
    """

    lossless = False

    def __init__(self, window: int = 6, entropy_threshold: float = 0.3) -> None:
        if window < 2:
            raise ValueError(f"window must be >= 2, got {window}")
        self.window = int(window)
        self.entropy_threshold = float(entropy_threshold)

    def verify(self, tree: DraftTree, logits: torch.Tensor) -> Verdict:
        check_logits(tree, logits)
        pred = logits.argmax(dim=-1).tolist()  # [num_nodes]
        top3 = logits.float().softmax(dim=-1).topk(min(3, logits.shape[1]), dim=-1).values
        entropy = (-(top3 * top3.clamp_min(1e-30).log()).sum(-1)).tolist()  # [num_nodes]
        best: list[int] = []
        for path in tree.paths():
            match = [int(tree.tokens[v]) == pred[int(tree.parents[v])] for v in path]
            n, kept = len(path), []
            for j, v in enumerate(path):
                loose = j + self.window <= n and all(match[j + 1 : j + self.window])
                unsure = entropy[int(tree.parents[v])] >= self.entropy_threshold
                if not (match[j] or (loose and unsure)):
                    break
                kept.append(v)
            if len(kept) > len(best):
                best = kept
        last = best[-1] if best else 0
        return Verdict(tuple(best), tuple(int(tree.tokens[v]) for v in best), int(pred[last]))
