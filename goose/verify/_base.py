"""The Verifier interface: which part of the tree the target agrees with.

Given the tree and the target's logits at every node (``p`` is the target
distribution after processing), a verifier returns the accepted path and the bonus
token. A verifier is **lossless** when the emitted tokens have exactly the law of
plain decoding (greedy: identical tokens); lossy verifiers say so with
``lossless = False`` and are never a default.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..trees import DraftTree

__all__ = ["Verdict", "Verifier", "check_logits", "sample_and_match"]


@dataclass(frozen=True, slots=True)
class Verdict:
    """Outcome of verifying one tree.

    Attributes:
        accepted: accepted node indices, root excluded, from the root down.
        tokens: their tokens (the accepted draft).
        bonus: the target's own token after the accepted path.
    """

    accepted: tuple[int, ...]
    tokens: tuple[int, ...]
    bonus: int

    @property
    def emitted(self) -> tuple[int, ...]:
        """Tokens this step commits: the accepted draft, then the bonus."""
        return self.tokens + (self.bonus,)


def check_logits(tree: DraftTree, logits: torch.Tensor) -> None:
    """Raise ``ValueError`` unless ``logits`` is ``[tree.num_nodes, vocab]``."""
    if logits.dim() != 2 or logits.shape[0] != tree.num_nodes:
        raise ValueError(
            f"logits must have shape [num_nodes={tree.num_nodes}, vocab], got {tuple(logits.shape)}"
        )
    if int(tree.tokens.max()) >= logits.shape[1]:
        raise ValueError(
            f"tree carries token {int(tree.tokens.max())} outside the vocabulary of {logits.shape[1]}"
        )


def sample_and_match(tree: DraftTree, draw: Callable[[int], int]) -> Verdict:
    """Walk from the root: draw the target's token at the current node; if a child
    carries it, move there, else stop and make it the bonus.

    With ``draw`` = argmax this is the greedy walk; with ``draw`` = one sample of the
    processed target distribution at the node it is lossless sampling (a deterministic
    draft is accepted exactly when it equals the target's own sample).
    """
    node, accepted = 0, []
    while True:
        y = draw(node)
        child = tree.child_with_token(node, y)
        if child is None:
            return Verdict(tuple(accepted), tuple(int(tree.tokens[v]) for v in accepted), int(y))
        accepted.append(child)
        node = child


class Verifier(ABC):
    """Decides the accepted path and bonus token of one tree.

    Subclasses implement :meth:`verify`. ``lossless`` must be ``False`` for any
    verifier that can emit a token plain decoding would not.

    Example:
        >>> import torch
        >>> from goose.trees import DraftTree
        >>> class FirstChildAlways(Verifier):  # a (lossy!) toy
        ...     lossless = False
        ...     def verify(self, tree, logits):
        ...         check_logits(tree, logits)
        ...         kids = tree.children(0)
        ...         bonus = int(logits[kids[0] if kids else 0].argmax())
        ...         return Verdict(kids[:1], tuple(int(tree.tokens[c]) for c in kids[:1]), bonus)
        >>> tree = DraftTree([0, 2], [-1, 0])
        >>> FirstChildAlways().verify(tree, torch.eye(3)[[1, 2]]).emitted
        (2, 2)
    """

    lossless: bool = True
    """Whether the emitted tokens have exactly the law of plain decoding (greedy:
    identical tokens). A lossy verifier sets ``False``; it is then labelled lossy in
    every output and is never a default."""
    reads_q: bool = False
    """Whether :meth:`verify` reads the draft distribution ``q`` of drawn children
    (:attr:`DraftTree.q`): only such a verifier is lossless on trees drawn from ``q``,
    and it has nothing to read on deterministic trees."""
    reads_bounds: bool = False
    """Whether :meth:`verify` accepts :class:`~goose.verify.BoundedLogits` (approximate
    logits with rigorous bounds and exact entries on demand) in place of exact logits.
    The decode loop then asks a target that can (``Target.bounded_logits``) for them."""
    argmax_only: bool = False
    """Whether :meth:`verify` reads nothing of a row of logits but its argmax. The decode
    loop then lets a target that can (``HFTarget`` on a CPU with native bfloat16) return
    logits that are exact at each row's argmax and approximate elsewhere."""

    @abstractmethod
    def verify(self, tree: DraftTree, logits: torch.Tensor) -> Verdict:
        """Args:
            tree: the verified tree.
            logits: ``[tree.num_nodes, vocab]`` target logits after each node (row
                ``v`` predicts the token following node ``v``'s path).
        """
