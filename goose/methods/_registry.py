"""Finding methods by name: the registry, dotted paths and installed entry points."""

from __future__ import annotations

import inspect
from importlib.metadata import entry_points
from typing import Any

from ..plugins import is_dotted, load_object
from ._builtin import BUILTIN_METHODS
from ._method import Drafting, Factory, Method

__all__ = ["ENTRY_POINT_GROUP", "METHODS", "get_method", "make_method", "parse_method", "register_method"]

ENTRY_POINT_GROUP = "goose.methods"
"""Installed packages provide methods under this entry-point group: the entry's name
is the method's name, its object a :class:`Method` or a factory."""

METHODS: dict[str, Method] = {m.name: m for m in BUILTIN_METHODS}
"""Registered methods by name (built-ins first; :func:`register_method` adds more)."""


def _takes_one_argument(fn: Any) -> bool:
    """Whether ``fn(ctx)`` binds (a callable whose signature cannot be read passes)."""
    try:
        inspect.signature(fn).bind(None)
    except TypeError:
        return False
    except ValueError:  # no signature to read
        return True
    return True


def _as_method(name: str, obj: Any) -> Method:
    if isinstance(obj, Method):
        return obj
    if callable(obj) and _takes_one_argument(obj):
        return Method(name, obj)
    raise ValueError(f"method {name!r} is neither a goose Method nor a factory: give a Method, or a function "
                     "factory(ctx) -> Drafting of one argument (a MethodContext)")


def register_method(name: str | Method, factory: Factory | None = None, *, replace: bool = False,
                    **rules: Any) -> Method:
    """Register a method: ``register_method(Method(...))`` or
    ``register_method("name", factory, default_budget=8, ...)`` (the keyword rules of
    :class:`Method`). Refuses a taken name unless ``replace``. Returns the method."""
    method = name if isinstance(name, Method) else Method(name, factory, **rules)  # type: ignore[arg-type]
    if isinstance(name, Method) and (factory is not None or rules):
        raise ValueError("pass either a Method or a name with its factory and rules")
    if not callable(method.factory):
        raise ValueError(f"method {method.name!r} needs a factory (ctx -> Drafting)")
    if "@" in method.name or "," in method.name or is_dotted(method.name):
        raise ValueError(f"method name {method.name!r} may not contain '@', ',', ':' or '.'")
    if method.name in METHODS and not replace:
        raise ValueError(f"method {method.name!r} is already registered (pass replace=True)")
    METHODS[method.name] = method
    return method


def _entry_point(name: str) -> Method | None:
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == name:
            return _as_method(name, ep.load())
    return None


def get_method(spec: str) -> Method:
    """A method by registered name, installed entry point (group
    :data:`ENTRY_POINT_GROUP`) or dotted path ``package.module:factory`` (a
    :class:`Method`, or a factory given the default rules)."""
    if spec in METHODS:
        return METHODS[spec]
    if is_dotted(spec):
        return _as_method(spec, load_object(spec, "method"))
    found = _entry_point(spec)
    if found is not None:
        return found
    known = list(METHODS) + sorted(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))
    raise ValueError(f"unknown method {spec!r}; known: {', '.join(known)} (or package.module:factory)")


def parse_method(spec: str) -> tuple[Method, int | str | None]:
    """``"name"`` or ``"name@B"`` (B an integer or ``auto``) -> the method and its
    checked budget (``None``: the method's default)."""
    name, at, budget = spec.strip().rpartition("@") if "@" in spec else (spec.strip(), "", "")
    method = get_method(name)
    if at and not budget:
        raise ValueError(f"{spec!r}: give a budget after '@' (an integer or auto)")
    return method, method.check_budget(budget or None)


def make_method(spec: str, budget: int | str | None = None, cost: Any = None) -> Drafting:
    """Fresh drafting parts of a method by name (``name@B`` allowed), in a default context."""
    method, at = parse_method(spec)
    return method.build(method.context(budget=at if budget is None else budget), cost)
