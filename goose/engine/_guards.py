"""The decode loop's runtime checks: what a prompt and each drafted tree must be before
the target sees them. Each check is a few vectorised comparisons on the tree's flat
arrays, cheap next to a pass, and raises one error that names the culprit.

(:class:`~goose.trees.DraftTree` itself already refuses a misplaced root, a parent
after its child and duplicate siblings when it is built.)
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import numpy as np

from ..trees import DraftTree, TreeShaper

__all__ = ["TreeError", "check_prompt", "check_tree"]


class TreeError(ValueError):
    """A shaper (or a source through it) drafted a tree the decode loop cannot verify."""


def check_prompt(prompt: Sequence[int], vocab_size: int | None, max_positions: int | None) -> list[int]:
    """The prompt as a list of ints, or ``ValueError``: empty, a non-integer id, an id
    outside ``[0, vocab_size)``, or too long to leave room for one new token in the
    target's context window."""
    if len(prompt) == 0:
        raise ValueError("the prompt is empty: give at least one token")
    ids = np.asarray(prompt)
    if ids.dtype.kind not in "iu" and not all(isinstance(t, numbers.Integral) and not isinstance(t, bool)
                                                for t in prompt):
        raise ValueError(f"prompt ids must be integers, got {ids.dtype} values such as {prompt[0]!r}")
    ids = ids.astype(np.int64, copy=False)
    bad = (ids < 0) | (ids >= vocab_size) if vocab_size else ids < 0
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"prompt id {int(ids[i])} at position {i} is outside the vocabulary "
                         f"[0, {vocab_size if vocab_size else 'inf'})")
    if max_positions is not None and len(ids) >= max_positions:
        raise ValueError(f"the prompt has {len(ids)} tokens and the model's context window is {max_positions}: "
                         "no room for a new token; shorten the prompt")
    return ids.tolist()


def check_tree(tree: object, root: int, budget: int, vocab_size: int | None, shaper: TreeShaper) -> DraftTree:
    """``tree`` if the decode loop may run it: a :class:`DraftTree` whose root is the
    last committed token, with at most ``budget`` draft nodes and every token in
    ``[0, vocab_size)``; otherwise :class:`TreeError` naming the shaper and, for a bad
    token, the source that proposed it."""
    who = type(shaper).__name__
    if not isinstance(tree, DraftTree):
        raise TreeError(f"shaper {who}.shape returned {type(tree).__name__}, not a DraftTree "
                        "(return the root alone, DraftTree([context[-1]], [-1]), for no draft)")
    if int(tree.tokens[0]) != int(root):
        raise TreeError(f"shaper {who} drafted a tree rooted at token {int(tree.tokens[0])}, but the root must be "
                        f"the last committed token, {int(root)}")
    if tree.size > budget:
        raise TreeError(f"shaper {who} drafted {tree.size} nodes at budget {budget}: a shaper must honour the budget")
    if vocab_size and tree.size and int(tree.tokens.max()) >= vocab_size:
        v = int(np.argmax(tree.tokens >= vocab_size))
        raise TreeError(f"source {tree.sources[v]!r} (through shaper {who}) drafted token {int(tree.tokens[v])}, "
                        f"outside the vocabulary [0, {vocab_size})")
    return tree
