"""The draft tree: flat arrays describing one verification step.

Vocabulary (used the same way everywhere in goose):

* **root** -- node 0, the last committed token. It is fed to the target with the
  tree but is not a draft: it is always "accepted".
* **node** -- one draft token at one place in the tree; nodes are numbered in an
  order where every parent comes before its children.
* **path** -- the nodes from the root (exclusive) down to a node, in order.
* **depth** -- number of edges from the root; the root has depth 0.
* **spine / branch** -- a tree's spine is its chain of reliable (context-source)
  nodes hanging from the root; branches are the other nodes. Each node carries its
  label in :attr:`DraftTree.kinds` (``"root"``, ``"spine"`` or ``"branch"``).
* **accepted** -- the nodes of the path the verifier keeps; **bonus** -- the one
  token the target adds after the accepted path.
* **budget** -- the number of draft nodes, root excluded: a tree of budget ``B`` is
  one forward pass over ``1 + B`` tokens.
* **drawn / deterministic** -- a drawn node was sampled from the draft distribution
  ``q`` its parent carries (:attr:`DraftTree.q`); a deterministic node was chosen
  without randomness (a point mass). Verifiers that read ``q`` visit a node's
  deterministic children first, then its drawn children in the order they were drawn.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import numpy as np

__all__ = ["ROOT_SOURCE", "DraftTree", "TreeBuilder"]

ROOT_SOURCE = "root"
"""The source label of every tree's root (node 0), which no source proposed."""


class DraftTree:
    """A validated draft tree stored as flat arrays (node 0 is the root).

    Args:
        tokens: ``[num_nodes]`` token id of every node; ``tokens[0]`` is the root
            (the last committed token).
        parents: ``[num_nodes]`` index of each node's parent; ``-1`` for the root
            only. Every parent must come before its child, which also rules out
            cycles.
        sources: ``[num_nodes]`` name of the token source that proposed each node
            (the root's is ``"root"``).
        confidences: ``[num_nodes]`` the source's estimate, in ``[0, 1]``, that the
            node is accepted given its parent is (the root's is 1).
        keys: ``[num_nodes]`` statistics bucket of each node inside its source
            (e.g. ``"rank0"``); used by the acceptance estimator.
        kinds: ``[num_nodes]`` label of each node, ``"spine"`` or ``"branch"`` (the
            root's is ``"root"``; default: every draft node a branch). Accepted tokens
            are streamed and counted by it.
        q: ``{node: (ids, probs)}`` the draft distribution the drawn children of
            ``node`` were sampled from, without replacement, in node order: the first
            drawn child from ``probs`` (normalised, over ``ids``), the next from the
            rest renormalised, and so on. Only nodes with drawn children appear.
        drawn: ``[num_nodes]`` whether each node was drawn from its parent's ``q``
            (default: none; the root never). The drawn children of a node must be a
            draw-order prefix: exactly its first drawn children were kept.
        priors: ``[num_nodes]`` each node's confidence as its source gave it, before an
            :class:`AcceptanceEstimator` corrected it (default: ``confidences``).

    Raises:
        ValueError: on an empty tree, a misplaced root, a parent that does not come
            before its child (a cycle or a misordering), duplicate sibling tokens,
            a negative token, or arrays of different lengths.

    Example:
        >>> tree = DraftTree(tokens=[7, 3, 4, 5], parents=[-1, 0, 0, 1])
        >>> tree.size, tree.depths.tolist()
        (3, [0, 1, 1, 2])
        >>> tree.position_ids(past_len=10).tolist()
        [10, 11, 11, 12]
        >>> tree.ancestor_mask().astype(int).tolist()
        [[1, 0, 0, 0], [1, 1, 0, 0], [1, 0, 1, 0], [1, 1, 0, 1]]
        >>> tree.paths()
        [[2], [1, 3]]
    """

    __slots__ = ("tokens", "parents", "sources", "confidences", "keys", "kinds", "depths", "q", "drawn",
                 "priors", "_children")

    def __init__(
        self,
        tokens: Sequence[int] | np.ndarray,
        parents: Sequence[int] | np.ndarray,
        sources: Sequence[str] | None = None,
        confidences: Sequence[float] | np.ndarray | None = None,
        keys: Sequence[str] | None = None,
        kinds: Sequence[str] | None = None,
        q: dict[int, tuple[np.ndarray, np.ndarray]] | None = None,
        drawn: Sequence[bool] | np.ndarray | None = None,
        priors: Sequence[float] | np.ndarray | None = None,
    ) -> None:
        raw = np.asarray(tokens)
        if raw.size and raw.dtype.kind not in "iu":  # never truncate a float id, or read a bool as one
            raise ValueError(f"token ids must be int64 integers, got {raw.dtype} values such as {raw.reshape(-1)[:3]}")
        tok = raw.astype(np.int64).reshape(-1)
        par = np.asarray(parents, dtype=np.int64).reshape(-1)
        n = tok.shape[0]
        if n == 0:
            raise ValueError("a draft tree needs at least its root node")
        if par.shape[0] != n:
            raise ValueError(f"tokens has {n} entries but parents has {par.shape[0]}")
        if par[0] != -1:
            raise ValueError(f"node 0 is the root and must have parent -1, got {par[0]}")
        if (tok < 0).any():
            raise ValueError(f"token ids must be >= 0, got {tok[tok < 0][:5].tolist()}")
        idx = np.arange(n)
        bad = np.nonzero((par[1:] < 0) | (par[1:] >= idx[1:]))[0]
        if bad.size:
            i = int(bad[0]) + 1
            if par[i] < 0:
                raise ValueError(f"node {i} has no parent: a tree has exactly one root (node 0)")
            raise ValueError(
                f"node {i} has parent {int(par[i])}: every parent must come before its child "
                "(the tree has a cycle or is misordered)"
            )
        src = tuple(sources) if sources is not None else (ROOT_SOURCE,) + ("draft",) * (n - 1)
        conf = (
            np.asarray(confidences, dtype=np.float64).reshape(-1)
            if confidences is not None
            else np.ones(n, dtype=np.float64)
        )
        key = tuple(keys) if keys is not None else ("",) * n
        kind = tuple(kinds) if kinds is not None else (ROOT_SOURCE,) + ("branch",) * (n - 1)
        prior = conf if priors is None else np.asarray(priors, dtype=np.float64).reshape(-1)
        for name, arr in (("sources", src), ("confidences", conf), ("keys", key), ("kinds", kind), ("priors", prior)):
            if len(arr) != n:
                raise ValueError(f"{name} has {len(arr)} entries, the tree has {n} nodes")
        for name, arr in (("confidences", conf), ("priors", prior)):
            if n > 1 and ((arr[1:] < 0) | (arr[1:] > 1) | np.isnan(arr[1:])).any():
                raise ValueError(f"{name} must lie in [0, 1]")

        children: list[list[int]] = [[] for _ in range(n)]
        depth = np.zeros(n, dtype=np.int64)
        seen: set[tuple[int, int]] = set()
        for i in range(1, n):
            p = int(par[i])
            pair = (p, int(tok[i]))
            if pair in seen:
                raise ValueError(
                    f"node {i} repeats token {int(tok[i])} among the children of node {p}: "
                    "sibling tokens must be distinct"
                )
            seen.add(pair)
            children[p].append(i)
            depth[i] = depth[p] + 1

        self.tokens = tok
        self.parents = par
        self.sources = src
        self.confidences = conf
        self.priors = prior
        self.keys = key
        self.kinds = kind
        self.depths = depth
        self._children = tuple(tuple(c) for c in children)
        self.drawn = np.zeros(n, dtype=bool) if drawn is None else np.asarray(drawn, dtype=bool).reshape(-1)
        self.q = self._check_q(q or {})

    def _check_q(self, q: dict[int, tuple[np.ndarray, np.ndarray]]) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        if self.drawn.shape[0] != self.num_nodes or self.drawn[0]:
            raise ValueError("drawn needs one flag per node, False for the root")
        out = {}
        for node, (ids, probs) in q.items():
            ids, probs = np.asarray(ids, dtype=np.int64), np.asarray(probs, dtype=np.float64)
            if ids.shape != probs.shape or (probs < 0).any() or probs.sum() <= 0:
                raise ValueError(f"q of node {node} needs matching ids and probabilities with positive mass")
            out[int(node)] = (ids, probs / probs.sum())
        for v in np.nonzero(self.drawn)[0]:
            parent = int(self.parents[v])
            if parent not in out:
                raise ValueError(f"node {int(v)} is drawn but its parent {parent} carries no q")
            ids, probs = out[parent]
            if not (probs[ids == self.tokens[v]] > 0).any():
                raise ValueError(f"node {int(v)} carries token {int(self.tokens[v])}, which q of node {parent} "
                                 "cannot draw")
        return out

    @property
    def has_draws(self) -> bool:
        """Whether any node was drawn from a draft distribution."""
        return bool(self.drawn.any())

    def verify_order(self, node: int) -> tuple[int, ...]:
        """The children of ``node`` in the order a ``q``-reading verifier visits them:
        deterministic children, then drawn ones in draw order."""
        kids = self._children[node]
        return tuple(c for c in kids if not self.drawn[c]) + tuple(c for c in kids if self.drawn[c])

    # -- construction helpers -------------------------------------------------------
    @classmethod
    def chain(cls, root: int, tokens: Sequence[int], source: str = "draft", kind: str = "branch",
              confidences: Sequence[float] | None = None) -> DraftTree:
        """A single path ``root -> tokens[0] -> tokens[1] -> ...``; ``confidences``:
        each token's conditional acceptance estimate (default 1), which ``auto``
        cuts by.

        Example:
            >>> DraftTree.chain(1, [5, 6], "suffix", "spine", [0.9, 0.5]).confidences.tolist()
            [1.0, 0.9, 0.5]
        """
        n = len(tokens)
        conf = None if confidences is None else [1.0, *confidences]
        return cls(
            [root, *tokens],
            [-1, *range(n)],
            sources=(ROOT_SOURCE,) + (source,) * n,
            confidences=conf,
            kinds=(ROOT_SOURCE,) + (kind,) * n,
        )

    def select(self, keep: Sequence[int] | np.ndarray) -> DraftTree:
        """The subtree of the nodes ``keep`` (ascending, root first, each node's parent
        kept too), renumbered, with every per-node field.

        >>> DraftTree.chain(5, [6, 7, 8], kind="spine").select([0, 1]).kinds
        ('root', 'spine')
        """
        keep = np.asarray(keep, dtype=np.int64)
        new = np.full(self.num_nodes, -1, dtype=np.int64)
        new[keep] = np.arange(keep.size)
        parents = np.where(self.parents[keep] >= 0, new[np.maximum(self.parents[keep], 0)], -1)
        if (parents[1:] < 0).any():
            raise ValueError("select keeps a node without its parent")
        pick = keep.tolist()
        q = {int(new[u]): d for u, d in self.q.items() if new[u] >= 0}
        return DraftTree(self.tokens[keep], parents, [self.sources[i] for i in pick], self.confidences[keep],
                         [self.keys[i] for i in pick], [self.kinds[i] for i in pick], q, self.drawn[keep], self.priors[keep])

    # -- derived views -----------------------------------------------------------------
    @property
    def num_nodes(self) -> int:
        """Nodes including the root (the length of the verification input)."""
        return int(self.tokens.shape[0])

    @property
    def size(self) -> int:
        """Draft nodes, root excluded (what a budget counts)."""
        return self.num_nodes - 1

    def children(self, node: int) -> tuple[int, ...]:
        """Indices of the children of ``node``, in insertion order."""
        return self._children[node]

    def child_with_token(self, node: int, token: int) -> int | None:
        """The child of ``node`` carrying ``token``, or ``None``."""
        for c in self._children[node]:
            if self.tokens[c] == token:
                return c
        return None

    def position_ids(self, past_len: int) -> np.ndarray:
        """``[num_nodes]`` position of each node: ``past_len + depth`` (the root sits at
        ``past_len``, i.e. right after the ``past_len`` cached tokens)."""
        return past_len + self.depths

    def ancestor_mask(self) -> np.ndarray:
        """``[num_nodes, num_nodes]`` bool; ``mask[i, j]`` is True iff node ``j`` is node
        ``i`` itself or one of its ancestors (tree attention within the tree)."""
        n = self.num_nodes
        mask = np.zeros((n, n), dtype=bool)
        for i in range(n):
            p = self.parents[i]
            if p >= 0:
                mask[i] = mask[p]
            mask[i, i] = True
        return mask

    def path_to(self, node: int) -> list[int]:
        """Node indices from the root's child down to ``node`` (empty for the root)."""
        out: list[int] = []
        while node > 0:
            out.append(node)
            node = int(self.parents[node])
        return out[::-1]

    def leaves(self) -> list[int]:
        """Nodes without children (the root alone is a leaf of an empty tree)."""
        return [i for i in range(self.num_nodes) if not self._children[i]]

    def paths(self) -> list[list[int]]:
        """Every root-to-leaf path (root excluded), one list per leaf."""
        return [self.path_to(leaf) for leaf in self.leaves() if leaf != 0]

    def truncated(self, max_depth: int) -> DraftTree:
        """This tree without its nodes deeper than ``max_depth`` (itself if none is).

        >>> DraftTree.chain(5, [6, 7, 8]).truncated(1).tokens.tolist()
        [5, 6]
        """
        keep = np.nonzero(self.depths <= max(max_depth, 0))[0]
        return self if keep.size == self.num_nodes else self.select(keep)

    def validate(self, budget: int) -> None:
        """Raise ``ValueError`` if the tree has more than ``budget`` draft nodes."""
        if self.size > budget:
            raise ValueError(f"tree has {self.size} draft nodes, over the budget of {budget}")

    def __len__(self) -> int:
        return self.num_nodes

    def __repr__(self) -> str:
        return f"DraftTree(size={self.size}, depth={int(self.depths.max())})"


class TreeBuilder:
    """Grows a tree node by node and merges duplicate siblings.

    Adding a token that a sibling already carries returns that sibling and keeps the
    larger confidence (two sources agreeing on a token make one node, not two).

    Example:
        >>> b = TreeBuilder(root=5)
        >>> a = b.add(0, 9, "context", 0.8)
        >>> b.add(0, 9, "recycled", 0.3) == a
        True
        >>> b.build().size
        1
    """

    __slots__ = ("tokens", "parents", "sources", "confidences", "priors", "keys", "kinds", "depths", "drawn", "q", "_index")

    def __init__(self, root: int) -> None:
        self.tokens: list[int] = [int(root)]
        self.parents: list[int] = [-1]
        self.sources: list[str] = [ROOT_SOURCE]
        self.confidences: list[float] = [1.0]
        self.priors: list[float] = [1.0]
        self.keys: list[str] = [""]
        self.kinds: list[str | None] = [ROOT_SOURCE]
        self.depths: list[int] = [0]
        self.drawn: list[bool] = [False]
        self.q: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._index: dict[tuple[int, int], int] = {}

    @property
    def size(self) -> int:
        return len(self.tokens) - 1

    def find(self, parent: int, token: int) -> int | None:
        return self._index.get((parent, int(token)))

    def add(self, parent: int, token: int, source: str, confidence: float = 1.0, key: str = "",
            drawn: bool = False, kind: str | None = None, prior: float | None = None) -> int:
        """Add ``token`` under ``parent`` (or merge with the sibling carrying it).
        ``confidence``: its conditional acceptance estimate, ``prior`` its source's own (default:
        ``confidence``; a merge keeps the larger pair); ``drawn``: the token was
        sampled from the ``q`` of ``parent`` (:meth:`set_q`) and may not merge;
        ``kind``: its label (``"spine"`` or ``"branch"``), by default that of its
        source (:meth:`build`)."""
        if isinstance(token, bool) or not isinstance(token, numbers.Integral):
            raise ValueError(f"source {source!r} proposed token {token!r}: token ids must be integers")
        token = int(token)
        existing = self._index.get((parent, token))
        if existing is not None:
            if drawn or self.drawn[existing]:
                raise ValueError(f"token {token} is already a child of node {parent}: drawn children never merge")
            if confidence > self.confidences[existing]:
                self.confidences[existing] = float(confidence)
                self.priors[existing] = float(confidence if prior is None else prior)
            return existing
        node = len(self.tokens)
        self.tokens.append(token)
        self.parents.append(parent)
        self.sources.append(source)
        self.confidences.append(float(confidence))
        self.priors.append(float(confidence if prior is None else prior))
        self.keys.append(key)
        self.kinds.append(kind)
        self.depths.append(self.depths[parent] + 1)
        self.drawn.append(bool(drawn))
        self._index[(parent, token)] = node
        return node

    def set_q(self, node: int, ids: np.ndarray, probs: np.ndarray) -> None:
        """The draft distribution the drawn children of ``node`` come from."""
        self.q[int(node)] = (np.asarray(ids, dtype=np.int64), np.asarray(probs, dtype=np.float64))

    def path_tokens(self, node: int) -> list[int]:
        """Draft tokens from the root's child down to ``node``."""
        out: list[int] = []
        while node > 0:
            out.append(self.tokens[node])
            node = self.parents[node]
        return out[::-1]

    def build(self, sources: Sequence[object] = ()) -> DraftTree:
        """The tree. A node added without a ``kind`` is labelled with the ``kind`` of
        the source (among ``sources``, :class:`~goose.sources.TokenSource` objects) whose
        name it carries; ``"branch"`` for any other."""
        kind_of = {s.name: s.kind for s in sources}  # type: ignore[attr-defined]
        kinds = [ROOT_SOURCE] + [k or kind_of.get(s, "branch") for s, k in zip(self.sources[1:], self.kinds[1:], strict=True)]
        with_draws = {self.parents[c] for c in range(len(self.tokens)) if self.drawn[c]}
        q = {u: d for u, d in self.q.items() if u in with_draws}
        return DraftTree(self.tokens, self.parents, self.sources, self.confidences, self.keys, kinds, q,
                         self.drawn, self.priors)
