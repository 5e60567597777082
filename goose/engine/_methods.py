"""Named decoding methods: which sources, shaper and default budget each one uses."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..sources import ContextNGramSource, RecyclingSource, TokenSource
from ..trees import (
    AcceptanceEstimator,
    BalancedShaper,
    BestFirstShaper,
    ChainShaper,
    GoosePaperShaper,
    NoDraftShaper,
    SpineShaper,
    TreeShaper,
)

__all__ = ["METHODS", "Method", "make_method"]


@dataclass
class Method:
    """A ready-to-run combination (fresh, stateful objects: one per generation)."""

    name: str
    sources: list[TokenSource]
    shaper: TreeShaper
    budget: int


def _ar() -> Method:
    # no source proposes anything: every step is one plain decoding step
    return Method("ar", [], NoDraftShaper(), 1)


def _pld() -> Method:
    shaper = ChainShaper(extend=False, estimator=AcceptanceEstimator(calibrate=True))
    return Method("pld", [ContextNGramSource((3, 2, 1), max_tokens=10)], shaper, 10)


def _tr() -> Method:
    shaper = BalancedShaper.token_recycling(estimator=AcceptanceEstimator(calibrate=True))
    return Method("tr", [RecyclingSource(k=8)], shaper, 80)


def _balanced(k: int) -> Callable[[], Method]:
    return lambda: Method(f"balanced-k{k}", [RecyclingSource(k=8)],
                          BalancedShaper(k=k, estimator=AcceptanceEstimator(calibrate=True)), 16)


def _goose() -> Method:
    sources = [ContextNGramSource((4, 3, 2), max_tokens=16), RecyclingSource(k=8)]
    return Method("goose", sources, SpineShaper(estimator=AcceptanceEstimator(calibrate=True)), 8)


def _best_first() -> Method:
    sources = [ContextNGramSource((4, 3, 2), max_tokens=16, max_matches=2), RecyclingSource(k=8)]
    return Method("best-first", sources, BestFirstShaper(estimator=AcceptanceEstimator(calibrate=True)), 8)


def _paper() -> Method:
    sources = [ContextNGramSource((5, 4, 3), max_tokens=20),
               RecyclingSource(k=10, bigram=True, renormalize=True)]
    return Method("paper", sources, GoosePaperShaper(), 100)


METHODS: dict[str, Callable[[], Method]] = {
    "ar": _ar,
    "pld": _pld,
    "tr": _tr,
    "balanced-k3": _balanced(3),
    "balanced-k5": _balanced(5),
    "goose": _goose,
    "best-first": _best_first,
    "paper": _paper,
}
"""Named methods: name -> a factory of fresh sources, shaper and default budget."""


def make_method(name: str) -> Method:
    """Fresh sources and shaper of a named method (``ar``, ``pld``, ``tr``,
    ``balanced-k3``, ``balanced-k5``, ``goose``, ``best-first``, ``paper``)."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; known: {', '.join(METHODS)}")
    return METHODS[name]()
