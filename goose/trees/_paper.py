"""The released GOOSE rules as a shaper preset (for comparisons with the paper).

This follows the official implementation's routing, confidence, chain extension and
tree construction ("Algorithm 1"), with its default constants. Use
:class:`goose.trees.SpineShaper` or :class:`goose.trees.BestFirstShaper` for goose's
own value-driven trees.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from ..sources import Proposal, TokenSource
from ._base import CANDIDATE_FLOOR, TreeShaper, check_budget
from ._shapers import _require
from ._tree import DraftTree, TreeBuilder

__all__ = ["GoosePaperShaper", "harmonic_split", "paper_confidence"]


def paper_confidence(p: Proposal | None, long_match: int = 8, max_chain: int = 20) -> float:
    """The release's spine confidence: 1 on consensus (>= 2 occurrences, all followed
    by the same token), else rising with the chain's length (0 for no chain)."""
    if p is None:
        return 0.0
    if p.total >= 2 and p.support == p.total:
        return 1.0
    n = len(p.tokens)
    if n >= long_match:
        return min(0.9, 0.7 + 0.2 * (n - long_match) / (max_chain - long_match))
    return 0.6 * n / long_match


def harmonic_split(share: int, length: int) -> list[int]:
    """Split ``share`` nodes over ``length`` spine nodes with weights 1/1, 1/2, ...;
    each gets at least one node while any are left.

    >>> harmonic_split(19, 20)
    [5, 2, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0]
    """
    if length <= 0:
        return []
    total_w = sum(1.0 / i for i in range(1, length + 1))
    out, left = [], share
    for i in range(1, length + 1):
        a = min(max(1, int(share * (1.0 / i) / total_w)), left)
        out.append(a)
        left -= a
    return out


@dataclass
class _Config:
    node_budget: int = 60  # nodes per tree, root included
    max_extended_chain: int = 100
    max_branch_depth: int = 6
    top_k: int = 10
    min_score: float = CANDIDATE_FLOOR
    rho: float = 0.5  # share of the branch budget on spine nodes
    ema_alpha: float = 0.3
    tiers: tuple[float, float, float] = (0.15, 0.30, 0.50)
    extension_threshold: float = 0.6
    long_match: int = 8
    max_chain: int = 20


class GoosePaperShaper(TreeShaper):
    """Released GOOSE: confidence-routed spine + harmonic branch split + BFS growth.

    Expects a :class:`ContextNGramSource` named ``spine`` (sizes (5,4,3), 20 tokens,
    earliest) and a :class:`RecyclingSource` named ``branch`` (k=10, bigram,
    renormalized) -- see ``goose.presets``. ``node_budget`` counts the root, as in
    the release; confident steps grow the tree toward ``max_extended_chain`` nodes,
    but never past the ``budget`` passed to :meth:`shape` (a hard cap on draft
    nodes; pass ``max_extended_chain`` to reproduce the release).
    """

    def __init__(self, spine: str = "context", branch: str = "recycled", **config: float) -> None:
        self.spine = spine
        self.branch = branch
        self.config = _Config(**config)  # type: ignore[arg-type]
        self.ema = 0.5

    def begin(self, prompt: Sequence[int]) -> None:
        self.ema = 0.5

    def record(self, tree: DraftTree, accepted: Sequence[int]) -> None:
        spine_nodes = [v for v in range(1, tree.num_nodes) if tree.sources[v] == self.spine]
        if spine_nodes:
            acc = set(accepted)
            rate = sum(v in acc for v in spine_nodes) / len(spine_nodes)
            a = self.config.ema_alpha
            self.ema = a * rate + (1 - a) * self.ema

    def _confidence(self, p: Proposal | None) -> float:
        return paper_confidence(p, self.config.long_match, self.config.max_chain)

    def shape(self, context: Sequence[int], sources: Sequence[TokenSource], budget: int) -> DraftTree:
        cap = check_budget(budget)
        cfg = self.config
        spine_src = _require(sources, self.spine, "GoosePaperShaper")
        branch_src = _require(sources, self.branch, "GoosePaperShaper")
        b = TreeBuilder(context[-1])
        props = spine_src.propose(context)
        first = props[0] if props else None
        chain = list(first.tokens) if first else []
        root_succ = branch_src.propose(context)
        if not root_succ:  # routing: plain chain, or a plain step (root only)
            for tok in chain[:cap]:
                b.add(b.size, tok, self.spine, 1.0, first.key)
            return b.build((spine_src, branch_src))
        conf = self._confidence(first)
        if conf > cfg.extension_threshold:
            limit, saturated = int(cfg.max_extended_chain * conf), conf >= 1.0
            while len(chain) < limit:
                nxt = spine_src.propose(context, chain)
                if not nxt:
                    break
                ok = not saturated or self._confidence(nxt[0]) == 1.0
                chain += nxt[0].tokens
                if not ok:
                    break
        nodes = cfg.node_budget + int(conf * max(0, cfg.max_extended_chain - cfg.node_budget))
        base = cfg.tiers[0] if self.ema < 0.2 else cfg.tiers[1] if self.ema < 0.4 else cfg.tiers[2]
        ratio = base + conf * (1 - base)
        spine_len = min(len(chain), int(nodes * ratio), cap)
        for i in range(spine_len):
            b.add(i, chain[i], self.spine, conf, first.key if first else "")
        bb = nodes - 1 - spine_len
        spine_share = max(1, int(bb * cfg.rho)) if spine_len > 0 and bb > 0 else 0
        root_share = bb - spine_share
        frontier: deque[tuple[int, float]] = deque()

        def attach(parent: int, candidates: list[Proposal], quota: int, skip: int | None) -> None:
            attached = 0
            for p in candidates:
                if attached >= quota or p.confidence[0] < cfg.min_score or b.size >= cap:
                    break
                if p.tokens[0] == skip:
                    continue
                child = b.add(parent, p.tokens[0], self.branch, p.confidence[0], p.key)
                attached += 1
                if b.depths[child] < cfg.max_branch_depth:
                    frontier.append((child, p.confidence[0]))

        attach(0, root_succ, root_share, chain[0] if spine_len else None)
        for i, quota in enumerate(harmonic_split(spine_share, spine_len), start=1):
            if quota > 0:
                nxt = chain[i] if i < spine_len else None
                attach(i, branch_src.propose(context, chain[:i]), quota, nxt)
        left = nodes - (b.size + 1)
        while frontier and left > 0 and b.size < cap:
            u, score = frontier.popleft()
            succ = branch_src.propose(context, b.path_tokens(u))
            depth = b.depths[u]
            width = max(1, min(len(succ), math.ceil(left * score)))
            width = min(width, max(1, cfg.top_k // depth))
            for p in succ[:width]:
                if left <= 0 or p.confidence[0] < cfg.min_score or b.size >= cap:
                    break
                child = b.add(u, p.tokens[0], self.branch, p.confidence[0], p.key)
                left -= 1
                if depth + 1 < cfg.max_branch_depth:
                    frontier.append((child, p.confidence[0]))
        return b.build((spine_src, branch_src))
