"""Name -> factory registries for shapers and sources (used by the CLI and engine)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from .sources import ContextNGramSource, RecyclingSource, TokenSource
from .trees import (
    AcceptanceEstimator,
    BalancedShaper,
    BestFirstShaper,
    ChainShaper,
    GoosePaperShaper,
    SpineShaper,
    TreeShaper,
)

__all__ = ["SHAPERS", "SOURCES", "make_shaper", "make_source", "resolve"]

SHAPERS: dict[str, Callable[..., TreeShaper]] = {
    "chain": ChainShaper,
    "balanced": BalancedShaper,
    "balanced-k5": lambda **kw: BalancedShaper(k=5, **kw),
    "tr-template": BalancedShaper.token_recycling,
    "spine": lambda **kw: SpineShaper(estimator=kw.pop("estimator", AcceptanceEstimator()), **kw),
    "best-first": lambda **kw: BestFirstShaper(estimator=kw.pop("estimator", AcceptanceEstimator()), **kw),
    "paper": GoosePaperShaper,
}
"""Shaper factories by name (spine and best-first come with an online estimator)."""

SOURCES: dict[str, Callable[..., TokenSource]] = {
    "context": ContextNGramSource,
    "recycled": RecyclingSource,
}
"""Source factories by name."""


def resolve(name: str, registry: dict[str, Callable[..., Any]], kind: str) -> Callable[..., Any]:
    """Look ``name`` up in ``registry``, or import it as ``package.module.Class``."""
    if name in registry:
        return registry[name]
    if "." in name:
        module, _, attr = name.replace(":", ".").rpartition(".")
        try:
            return getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as err:
            raise ValueError(f"cannot import {kind} {name!r}: {err}") from None
    raise ValueError(f"unknown {kind} {name!r}; known: {', '.join(sorted(registry))} (or a dotted path)")


def make_shaper(name: str, **kwargs: Any) -> TreeShaper:
    """A shaper by registry name (``chain``, ``balanced``, ``spine``, ...) or dotted path."""
    shaper = resolve(name, SHAPERS, "shaper")(**kwargs)
    if not isinstance(shaper, TreeShaper):
        raise ValueError(f"{name!r} did not build a TreeShaper")
    return shaper


def make_source(name: str, **kwargs: Any) -> TokenSource:
    """A source by registry name (``context``, ``recycled``) or dotted path."""
    source = resolve(name, SOURCES, "source")(**kwargs)
    if not isinstance(source, TokenSource):
        raise ValueError(f"{name!r} did not build a TokenSource")
    return source
