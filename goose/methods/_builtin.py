"""goose's built-in methods: the one table of method names (add a method here)."""

from __future__ import annotations

from ..sources import ContextNGramSource, RecyclingSource, StochasticNGramSource, SuffixSource, SuffixTable
from ..trees import (
    AcceptanceEstimator,
    BalancedShaper,
    BestFirstShaper,
    ChainShaper,
    GoosePaperShaper,
    NoDraftShaper,
    SpineShaper,
    StochasticShaper,
)
from ._method import Drafting, Method, MethodContext

__all__ = ["BUILTIN_METHODS"]


def _estimator(ctx: MethodContext | None = None) -> AcceptanceEstimator:
    """A calibrating estimator; with ``ctx``, the one its memory keeps, carried into this
    generation (:meth:`AcceptanceEstimator.carry`). A method that is not
    ``cross_request`` gets a fresh memory per generation, so a fresh estimator; a
    ``*-shared`` one the caller's, so the record of the caller's earlier generations."""
    if ctx is None:
        return AcceptanceEstimator(calibrate=True)
    estimator = ctx.memory.setdefault("acceptance-estimator", lambda: AcceptanceEstimator(calibrate=True))
    estimator.carry()
    return estimator


def _ar(ctx: MethodContext) -> Drafting:
    # no source proposes anything: every step is one plain decoding step
    return Drafting([], NoDraftShaper(), 1)


def _pld(ctx: MethodContext) -> Drafting:
    return Drafting([ContextNGramSource((3, 2, 1), max_tokens=10)],
                    ChainShaper(extend=False, estimator=_estimator(ctx)), ctx.node_budget())


def _tr(ctx: MethodContext) -> Drafting:
    return Drafting([RecyclingSource(k=8)], BalancedShaper.token_recycling(estimator=_estimator()),
                    ctx.node_budget())


def _balanced(k: int):  # noqa: ANN202 - a factory of factories
    def factory(ctx: MethodContext) -> Drafting:
        return Drafting([RecyclingSource(k=8)], BalancedShaper(k=k, estimator=_estimator()), ctx.node_budget())

    return factory


def _goose(ctx: MethodContext) -> Drafting:
    sources = [ContextNGramSource((4, 3, 2), max_tokens=16), RecyclingSource(k=8)]
    return Drafting(sources, SpineShaper(estimator=_estimator(ctx)), ctx.node_budget())


def _best_first(ctx: MethodContext) -> Drafting:
    sources = [ContextNGramSource((4, 3, 2), max_tokens=16, max_matches=2), RecyclingSource(k=8)]
    return Drafting(sources, BestFirstShaper(estimator=_estimator(ctx)), ctx.node_budget())


def _paper_shaper(ctx: MethodContext) -> GoosePaperShaper:
    # @B is the release's node budget (root included), not a hard cap: confident cycles
    # grow the tree toward 100 nodes, the loop's budget
    return GoosePaperShaper() if ctx.budget is None else GoosePaperShaper(node_budget=int(ctx.budget))


def _paper(ctx: MethodContext) -> Drafting:
    sources = [ContextNGramSource((5, 4, 3), max_tokens=20), RecyclingSource(k=10, bigram=True, renormalize=True)]
    return Drafting(sources, _paper_shaper(ctx), ctx.default_budget)


def _suffix(shared: bool = False, recycled: bool = False):  # noqa: ANN202 - a factory of factories
    def factory(ctx: MethodContext) -> Drafting:
        # shared: the responses of the caller's earlier generations are counted too (a
        # Session, a bench column); they leak statistics between requests, by design
        table = ctx.memory.setdefault("suffix-table", SuffixTable) if shared else None
        source = SuffixSource(max_matches=2 if recycled else 1, shared=table)
        if recycled:
            return Drafting([source, RecyclingSource(k=8)], SpineShaper(spine="suffix", estimator=_estimator()),
                            ctx.node_budget())
        return Drafting([source], ChainShaper("suffix", extend=False, estimator=_estimator()), ctx.node_budget())

    return factory


def _stochastic(context: bool, draw: bool = True, delay: int | str = 0, shared: bool = False):  # noqa: ANN202
    def factory(ctx: MethodContext) -> Drafting:
        # shared: one table for every generation of the caller (a Session, a bench column, the
        # rows of a batch), as STAND keeps it across the samples of best-of-N; each its own view
        table = (ctx.memory.setdefault("stand-table", lambda: StochasticNGramSource(k=10, hot_start=True)).view()
                 if shared else StochasticNGramSource(k=10))
        sources: list = [table]
        if context:
            sources.insert(0, ContextNGramSource((4, 3, 2), max_tokens=16))
        shaper = StochasticShaper(ctx.temperature, draw=draw, seed=ctx.seed, delay=delay, estimator=_estimator())
        return Drafting(sources, shaper, ctx.node_budget())

    return factory


def _bf16_draft(draw: bool):  # noqa: ANN202 - a factory of factories
    def factory(ctx: MethodContext) -> Drafting:
        source = ctx.target.draft_source("bf16")  # the target's bfloat16 copy (goose.hf.HFTarget)
        # one path (DDTE with the delay at the budget): a model draft costs a pass per node
        shaper = StochasticShaper(ctx.temperature, draw=draw, seed=ctx.seed, max_children=1,
                                  max_depth=ctx.node_budget(), estimator=_estimator())
        return Drafting([source], shaper, ctx.node_budget())

    return factory


BOTH = ("both-sources",)
SAMPLING = ("stochastic",)
BUILTIN_METHODS = (
    Method("ar", _ar, default_budget=1, takes_budget=False, auto=False, description="plain decoding"),
    Method("pld", _pld, default_budget=10, budgeted=False, sim_shaper="chain", tags=("context-only",),
           description="prompt lookup: one context chain"),
    Method("tr", _tr, default_budget=80, budgeted=False, sim_shaper="tr-template", tags=("recycled-only",),
           description="Token Recycling's static tree"),
    Method("balanced-k3", _balanced(3), default_budget=16, sim_shaper="balanced", sim_rows=True, tags=("isotropic",),
           description="isotropic control: 3 recycled children per node"),
    Method("balanced-k5", _balanced(5), default_budget=16, sim_shaper="balanced-k5", sim_rows=True, tags=("isotropic",),
           description="isotropic control: 5 recycled children per node"),
    Method("goose", _goose, default_budget=8, sim_shaper="spine", tags=(*BOTH, "anisotropic"),
           description="context spine + recycled branches"),
    Method("best-first", _best_first, default_budget=8, sim_shaper="best-first", tags=(*BOTH, "anisotropic"),
           description="optimal tree under online acceptance estimates"),
    # the same drafting, their acceptance estimates carried from the caller's earlier
    # generations (AcceptanceEstimator.carry): statistics shared between requests
    Method("pld-shared", _pld, default_budget=10, budgeted=False, sim_shaper="chain", cross_request=True,
           tags=("context-only",), description="pld, its estimates carried across the caller's requests"),
    Method("goose-shared", _goose, default_budget=8, sim_shaper="spine", cross_request=True,
           tags=(*BOTH, "anisotropic"), description="goose, its estimates carried across the caller's requests"),
    Method("best-first-shared", _best_first, default_budget=8, sim_shaper="best-first", cross_request=True,
           tags=(*BOTH, "anisotropic"), description="best-first, its estimates carried across the caller's requests"),
    # the simulator has no model of the suffix source yet (sim_shaper None): replay serves
    Method("suffix", _suffix(), default_budget=16, budgeted=False, tags=("suffix-only",),
           description="a counts-based chain after the longest earlier suffix (goose.sources.SuffixSource)"),
    Method("suffix-shared", _suffix(shared=True), default_budget=16, budgeted=False, cross_request=True,
           tags=("suffix-only",),
           description="suffix, also counting the caller's earlier responses (shares statistics across requests)"),
    Method("goose-suffix", _suffix(recycled=True), default_budget=8, tags=("anisotropic",),
           description="a suffix spine + recycled branches"),
    Method("stand", _stochastic(context=False), default_budget=16, auto=False, tags=SAMPLING,
           description="STAND: children drawn from an n-gram table of target distributions"),
    Method("stand-topk", _stochastic(context=False, draw=False), default_budget=16,
           tags=("deterministic-control",), description="stand's sources and tree, top-k children (sample-and-match)"),
    Method("goose-stand", _stochastic(context=True), default_budget=16, auto=False, tags=(*SAMPLING, "anisotropic"),
           description="context spine + children drawn from the STAND table"),
    Method("goose-stand-topk", _stochastic(context=True, draw=False), default_budget=16,
           tags=("deterministic-control",), description="goose-stand's sources and tree, top-k children"),
    Method("ddte", _stochastic(context=True, delay="auto"), default_budget=16, auto=False, tags=SAMPLING,
           description="goose-stand with delayed expansion: one path, then branches"),
    Method("stand-shared", _stochastic(context=False, shared=True), default_budget=16, auto=False,
           cross_request=True, tags=SAMPLING,
           description="stand with one table for all generations of the caller (best-of-N on one prompt)"),
    Method("stand-shared-topk", _stochastic(context=False, draw=False, shared=True), default_budget=16,
           cross_request=True, tags=("deterministic-control",),
           description="stand-shared's sources and tree, top-k children"),
    Method("bf16-draft", _bf16_draft(draw=True), default_budget=6, auto=False, needs_target=True, tags=SAMPLING,
           description="a bfloat16 copy of the target drafts one path, drawn from its own law"),
    Method("bf16-draft-topk", _bf16_draft(draw=False), default_budget=6, auto=False, needs_target=True,
           tags=("deterministic-control",), description="bf16-draft's source and path, its argmax tokens"),
    Method("paper", _paper, default_budget=100, auto=False, sim_shaper=_paper_shaper, sim_rows=True, tags=BOTH,
           description="the released GOOSE rules (@B: the release's node budget)"),
)
"""The built-in methods, in the order help texts list them."""
