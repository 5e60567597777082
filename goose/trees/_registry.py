"""The shapers known by name (``goose simulate --shapers``, :func:`make_shaper`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .. import theory
from ..plugins import is_dotted, load_object
from ._base import TreeShaper
from ._paper import GoosePaperShaper
from ._shapers import BalancedShaper, BestFirstShaper, ChainShaper, SpineShaper

__all__ = ["SHAPERS", "ShaperSpec", "make_shaper", "shaper_spec"]

# closed form: (alpha, betas, budget, decay) -> (E[A] with a context match, E[A] without one)
ClosedForm = Callable[[float, Sequence[float], int, float], tuple[float, float]]


@dataclass(frozen=True)
class ShaperSpec:
    """A shaper by name: how to build it (plain: no acceptance estimator), whether its
    tree depends only on the proposals it sees (``stateless``: the simulator may then
    reuse trees), and ``goose.theory``'s expected accepted length for it under the
    simulator's source model, where one is known."""

    make: Callable[[], TreeShaper]
    stateless: bool = False
    closed_form: ClosedForm | None = None


def _balanced(k: int) -> ClosedForm:
    return lambda alpha, betas, budget, decay: (theory.balanced_value(betas, budget, k),) * 2


SHAPERS: dict[str, ShaperSpec] = {
    "chain": ShaperSpec(ChainShaper, True, lambda a, bs, b, d: (theory.chain_value(a, b, d), 0.0)),
    "balanced": ShaperSpec(BalancedShaper, True, _balanced(3)),
    "balanced-k5": ShaperSpec(lambda: BalancedShaper(k=5), True, _balanced(5)),
    "tr-template": ShaperSpec(BalancedShaper.token_recycling, True),
    "spine": ShaperSpec(SpineShaper, True, lambda a, bs, b, d: (theory.optimal_shape(a, bs, b, d).value,
                                                                theory.balanced_value(bs, b, 3))),
    "best-first": ShaperSpec(BestFirstShaper, True, lambda a, bs, b, d: (theory.optimal_shape(a, bs, b, d).value,
                                                                         theory.optimal_shape(0.0, bs, b).value)),
    "paper": ShaperSpec(GoosePaperShaper, False),
}
"""Shapers by name. A dotted path (``package.module:Class``) names any other; it is
built with no arguments and treated as stateful."""


def shaper_spec(name: str) -> ShaperSpec:
    """The :class:`ShaperSpec` of a registered name or of a dotted path to a shaper class."""
    if name in SHAPERS:
        return SHAPERS[name]
    if not is_dotted(name):
        raise ValueError(f"unknown shaper {name!r}; known: {', '.join(SHAPERS)} (or package.module:Class)")
    obj = load_object(name, "shaper")
    if isinstance(obj, ShaperSpec):
        return obj
    if not callable(obj):
        raise ValueError(f"shaper {name!r} is not a TreeShaper class or factory")
    return ShaperSpec(obj)


def make_shaper(name: str) -> TreeShaper:
    """A fresh shaper by registered name or dotted path."""
    shaper = shaper_spec(name).make()
    if not isinstance(shaper, TreeShaper):
        raise ValueError(f"{name!r} did not build a TreeShaper")
    return shaper
