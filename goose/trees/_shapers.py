"""Built-in shapers: chain, balanced (isotropic), best-first (optimal) and spine (GOOSE)."""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from ..sources import Proposal, TokenSource
from ._base import CANDIDATE_FLOOR, TreeShaper, check_budget, path_probabilities, source_by_name
from ._estimate import AcceptanceEstimator, tagged
from ._template import TOKEN_RECYCLING_TEMPLATE
from ._tree import DraftTree, TreeBuilder

__all__ = ["BalancedShaper", "BestFirstShaper", "ChainShaper", "NoDraftShaper", "SpineShaper"]


def _require(sources: Sequence[TokenSource], name: str, who: str) -> TokenSource:
    src = source_by_name(sources, name)
    if src is None:
        names = [s.name for s in sources]
        raise ValueError(f"{who} needs a source named {name!r}; got {names}")
    return src


def _last_path_probability(tree: DraftTree) -> float | None:
    """The path probability of ``tree``'s last node (1 for a bare root); ``None`` when a
    confidence lies outside [0, 1], where a path probability may grow along a path."""
    conf = np.asarray(tree.confidences[1:], dtype=np.float64)
    return float(path_probabilities(tree)[-1]) if ((conf >= 0.0) & (conf <= 1.0)).all() else None


class _EstimatedShaper(TreeShaper):
    """A shaper whose node confidences may be corrected online by an :class:`AcceptanceEstimator`."""

    estimator: AcceptanceEstimator | None = None

    def record(self, tree: DraftTree, accepted: Sequence[int]) -> None:
        if self.estimator is not None:
            self.estimator.record(tree, accepted)

    def _a(self, source: str, key: str, depth: int, conf: float) -> float:
        if self.estimator is None:
            return conf
        return self.estimator.predict(source, key, depth, conf)


class NoDraftShaper(TreeShaper):
    """The root alone: every step is one plain decoding step (the ``ar`` baseline)."""

    def shape(self, context: Sequence[int], sources: Sequence[TokenSource], budget: int) -> DraftTree:
        check_budget(budget)
        return DraftTree([context[-1]], [-1])


class ChainShaper(_EstimatedShaper):
    """A single chain from one source (prompt lookup decoding's draft).

    The best proposal at the root is laid out as a chain; with ``extend=True`` the
    source is asked again at the end of the chain until the budget is full or it
    has nothing more (GOOSE's chain extension). An ``estimator`` changes only the
    confidences the nodes carry (what :class:`AutoBudgetShaper` cuts by), never
    the chain.

    Example:
        >>> from goose.sources import ContextNGramSource
        >>> tree = ChainShaper().shape([1, 2, 3, 4, 1, 2], [ContextNGramSource((2,), max_tokens=2)], 3)
        >>> tree.tokens.tolist()
        [2, 3, 4, 1]
    """

    def __init__(self, source: str = "context", extend: bool = True,
                 estimator: AcceptanceEstimator | None = None) -> None:
        self.source = source
        self.extend = extend
        self.estimator = estimator

    def shape(self, context: Sequence[int], sources: Sequence[TokenSource], budget: int) -> DraftTree:
        budget = check_budget(budget)
        src = _require(sources, self.source, "ChainShaper")
        b = TreeBuilder(context[-1])
        node, path = 0, []
        while b.size < budget:
            props = src.propose(context, path)
            if not props:
                break
            p = props[0]
            for tok, conf in zip(p.tokens, p.confidence, strict=True):
                if b.size >= budget:
                    break
                node = b.add(node, tok, p.source, self._a(p.source, p.key, len(path) + 1, conf), p.key, prior=conf)
                path.append(tok)
            if not self.extend:
                break
        return b.build(sources)

    def growth_bound(self, tree: DraftTree) -> float | None:
        """A chain at a larger budget continues this one, and a path probability never
        grows along a chain: the last node's bounds every node still to come."""
        return _last_path_probability(tree)


class BalancedShaper(_EstimatedShaper):
    """Isotropic control: every node gets up to ``k`` children from one source.

    Breadth-first from the root: each node takes the ``k`` best proposals of the
    source (those with confidence >= ``min_confidence``), while its depth is below
    ``max_depth``, until the budget is spent. With ``template`` set, the shape is a
    fixed tree of candidate ranks instead (see :meth:`token_recycling`). An
    ``estimator`` changes only the confidences the nodes carry (what
    :class:`AutoBudgetShaper` cuts by), never the shape.

    Example:
        >>> import numpy as np
        >>> from goose.sources import Observation, RecyclingSource
        >>> src = RecyclingSource(k=3)
        >>> src.observe(Observation(np.array([1, 2, 3]), -np.ones(3, int),
        ...     np.array([[2, 3, 4], [3, 4, 5], [1, 2, 3]]), np.full((3, 3), 0.3)))
        >>> BalancedShaper(k=2).shape([1], [src], 6).tokens.tolist()
        [1, 2, 3, 3, 4, 1, 2]
    """

    def __init__(
        self,
        source: str = "recycled",
        k: int = 3,
        max_depth: int = 6,
        min_confidence: float = CANDIDATE_FLOOR,
        template: Sequence[tuple[int, ...]] | None = None,
        estimator: AcceptanceEstimator | None = None,
    ) -> None:
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        if max_depth < 1:
            raise ValueError(f"max_depth must be >= 1, got {max_depth}")
        self.source = source
        self.k = int(k)
        self.max_depth = int(max_depth)
        self.min_confidence = float(min_confidence)
        self.template = tuple(tuple(p) for p in template) if template is not None else None
        self.estimator = estimator

    @classmethod
    def token_recycling(cls, source: str = "recycled",
                        estimator: AcceptanceEstimator | None = None) -> BalancedShaper:
        """Token Recycling's static 80-node tree (ranks 0..7, depth 6) as a shaper;
        a smaller budget keeps the template's first nodes (level order)."""
        return cls(source=source, k=8, template=TOKEN_RECYCLING_TEMPLATE, min_confidence=0.0,
                   estimator=estimator)

    def shape(self, context: Sequence[int], sources: Sequence[TokenSource], budget: int) -> DraftTree:
        budget = check_budget(budget)
        src = _require(sources, self.source, "BalancedShaper")
        if self.template is not None:
            return self._shape_template(context, src, budget)
        b = TreeBuilder(context[-1])
        queue: deque[tuple[int, list[int]]] = deque([(0, [])])
        while queue and b.size < budget:
            node, path = queue.popleft()
            if b.depths[node] >= self.max_depth:
                continue
            taken = 0
            for p in src.propose(context, path):
                if taken >= self.k or b.size >= budget:
                    break
                if p.confidence[0] < self.min_confidence or b.find(node, p.tokens[0]) is not None:
                    continue
                a = self._a(p.source, p.key, b.depths[node] + 1, p.confidence[0])
                child = b.add(node, p.tokens[0], p.source, a, p.key, prior=p.confidence[0])
                queue.append((child, path + [p.tokens[0]]))
                taken += 1
        return b.build([src])

    def _shape_template(self, context: Sequence[int], src: TokenSource, budget: int) -> DraftTree:
        b = TreeBuilder(context[-1])
        where: dict[tuple[int, ...], int] = {(): 0}
        paths: dict[int, list[int]] = {0: []}
        props_at: dict[int, list[Proposal]] = {}
        for ranks in self.template:  # level order: parents come first
            if b.size >= budget:
                break
            parent = where.get(ranks[:-1])
            if parent is None:
                continue  # the parent was not drafted (unobserved row)
            if parent not in props_at:
                props_at[parent] = src.propose(context, paths[parent])
            props = props_at[parent]
            if ranks[-1] >= len(props) or props[ranks[-1]].confidence[0] < self.min_confidence:
                continue
            p = props[ranks[-1]]
            if b.find(parent, p.tokens[0]) is not None:
                continue
            a = self._a(p.source, p.key, len(ranks), p.confidence[0])
            node = b.add(parent, p.tokens[0], p.source, a, p.key, prior=p.confidence[0])
            where[ranks] = node
            paths[node] = paths[parent] + [p.tokens[0]]
        return b.build([src])


class BestFirstShaper(_EstimatedShaper):
    """The optimal tree under the independent-acceptance model (docs/theory.md, section 2).

    Every node's value is its path probability P(v) = product of a(u) on its path,
    where a(u) is the source's confidence (corrected by ``estimator`` when given).
    Nodes are added in decreasing P(v), expanding each chosen node by asking every
    source about it: since P(child) <= P(parent) this yields the B most valuable
    candidates, which form a tree and maximise E[accepted] (``goose.theory``).
    Proposals of several sources for the same token are merged (one node, the
    larger a). A multi-token proposal offers its next token under the node it made,
    and that source is asked again only when the proposal runs out.

    Args:
        estimator: optional online correction of the sources' confidences.
        spine: if set, the source of that name is only consulted along one spine (its
            best proposal at the root and the continuation of that chain) -- this is
            how :class:`SpineShaper` restricts the candidate pool.
        min_value: candidates whose path probability is below this are not drafted.
    """

    def __init__(
        self,
        estimator: AcceptanceEstimator | None = None,
        spine: str | None = None,
        min_value: float = 0.0,
    ) -> None:
        self.estimator = estimator
        self.spine = spine
        self.min_value = float(min_value)

    def shape(self, context: Sequence[int], sources: Sequence[TokenSource], budget: int) -> DraftTree:
        budget = check_budget(budget)
        b = TreeBuilder(context[-1])
        heap: list[_Candidate] = []
        tick = itertools.count()
        on_spine = {0}

        def expand(node: int, value: float, rest: _Rest | None) -> None:
            # the children of ``node``: the next token of a chain proposal left over (rest), then every source's
            path = b.path_tokens(node)
            depth = len(path) + 1
            offers: list[_Offer] = []
            if rest and rest.tokens:
                offers.append(_Offer(rest.tokens[0], rest.source, rest.key, rest.confidences[0], rest.advanced()))
            for src in sources:
                if rest and rest.tokens and src.name == rest.source:
                    continue
                if self.spine is not None and src.name == self.spine and node not in on_spine:
                    continue
                props = src.propose(context, path)
                if self.spine is not None and src.name == self.spine:
                    props = props[:1]
                offers += [_Offer(p.tokens[0], p.source, p.key, p.confidence[0],
                                  _Rest(p.source, p.key, p.tokens[1:], p.confidence[1:])) for p in props]
            offered_by: dict[int, set[str]] = {}
            for o in offers:
                offered_by.setdefault(o.token, set()).add(o.source)
            offering = {o.source for o in offers}
            best: dict[int, _Choice] = {}
            for o in offers:
                # siblings compete (one child at most is accepted): the estimator pools a token two sources
                # agree on, and one that another source contradicts, apart from a lone one
                tag = "agree" if len(offered_by[o.token]) > 1 else "split" if len(offering) > 1 else ""
                key = tagged(o.key, tag)
                a = self._a(o.source, key, depth, o.prior)
                tail = o.rest
                old = best.get(o.token)
                if old is not None:  # two sources agree: one node, larger a, keep a chain
                    if not tail.tokens:
                        tail = old.rest
                    if a < old.accept:
                        best[o.token] = old._replace(rest=tail)
                        continue
                best[o.token] = _Choice(a, o.source, key, tail, o.prior)
            for tok, choice in best.items():
                v = value * choice.accept
                if v > self.min_value:
                    heapq.heappush(heap, _Candidate(-v, next(tick), node, tok, choice))

        expand(0, 1.0, None)
        while heap and b.size < budget:
            cand = heapq.heappop(heap)
            choice = cand.choice
            node = b.add(cand.parent, cand.token, choice.source, choice.accept, choice.key, prior=choice.prior)
            if cand.parent in on_spine and self.spine in (choice.source, choice.rest.source if choice.rest else None):
                on_spine.add(node)
            if b.size < budget:  # the last node's children could not be added
                expand(node, -cand.neg_value, choice.rest)
        return b.build(sources)

    def growth_bound(self, tree: DraftTree) -> float | None:
        """Nodes are added in decreasing path probability, and a larger budget only
        adds more: the last node's bounds every node still to come."""
        return _last_path_probability(tree)


class _Rest(NamedTuple):
    """What is left of a chain proposal below the node it made: the source and key it
    came from, its further tokens and their confidences."""

    source: str
    key: str
    tokens: tuple[int, ...]
    confidences: tuple[float, ...]

    def advanced(self) -> _Rest:
        """The rest after its first token becomes a node."""
        return _Rest(self.source, self.key, self.tokens[1:], self.confidences[1:])


class _Offer(NamedTuple):
    """One source's offer of ``token`` as a child of a node: the source's confidence
    ``prior`` in it and the rest of its chain below."""

    token: int
    source: str
    key: str
    prior: float
    rest: _Rest


class _Choice(NamedTuple):
    """The best offer of one token as a child of a node: its conditional acceptance
    ``accept``, the source and (tagged) key it is counted under, the chain rest below
    it, and the source's own confidence ``prior``."""

    accept: float
    source: str
    key: str
    rest: _Rest | None
    prior: float


class _Candidate(NamedTuple):
    """A heap entry: a token offered as a child of ``parent``, ordered by decreasing
    path probability (``neg_value``), ties by arrival (``tick``)."""

    neg_value: float
    tick: int
    parent: int
    token: int
    choice: _Choice


class SpineShaper(TreeShaper):
    """GOOSE's anisotropic tree: a context spine with recycled branches.

    The most reliable chain source (``spine``) gives one chain from the root; the
    branch source proposes alternatives at every spine node and grows them below.
    Which spine nodes and which branches are kept is decided by path probability
    (best-first over this restricted pool), so a confident spine becomes long and
    bare and a doubtful one short and bushy. With no match it falls back to a
    balanced tree of the branch source; with no branch rows to the plain chain.
    For the released GOOSE rules use :class:`GoosePaperShaper`.
    """

    def __init__(
        self,
        spine: str = "context",
        branch: str = "recycled",
        estimator: AcceptanceEstimator | None = None,
        fallback_k: int = 3,
    ) -> None:
        self.spine = spine
        self.branch = branch
        self._tree = BestFirstShaper(estimator=estimator, spine=spine)
        # the fallback's nodes carry corrected estimates too: raw recycled rows are over-confident
        # (measured: rows at 0.9-1.0 accepted 0.55), and auto cuts by these numbers
        self._fallback = BalancedShaper(source=branch, k=fallback_k, estimator=estimator)
        self._fell_back = True  # whether the last tree was the fallback's

    @property
    def estimator(self) -> AcceptanceEstimator | None:
        return self._tree.estimator

    def record(self, tree: DraftTree, accepted: Sequence[int]) -> None:
        self._tree.record(tree, accepted)

    def shape(self, context: Sequence[int], sources: Sequence[TokenSource], budget: int) -> DraftTree:
        budget = check_budget(budget)
        spine_src = _require(sources, self.spine, "SpineShaper")
        branch_src = _require(sources, self.branch, "SpineShaper")
        pool = [spine_src, branch_src]
        self._fell_back = not spine_src.propose(context)
        if self._fell_back:
            return self._fallback.shape(context, pool, budget)
        return self._tree.shape(context, pool, budget)

    def growth_bound(self, tree: DraftTree) -> float | None:
        """The best-first tree's bound; none for the balanced fallback (breadth-first,
        its path probabilities may rise again)."""
        return None if self._fell_back else self._tree.growth_bound(tree)
