"""Loading user code by name: ``package.module:attribute`` (or ``package.module.attribute``)."""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["is_dotted", "load_object"]


def is_dotted(spec: str) -> bool:
    """Whether ``spec`` names an object in a module rather than a registered name."""
    return ":" in spec or ("." in spec and not spec.replace(".", "").isdigit())


def load_object(spec: str, kind: str) -> Any:
    """The object ``spec`` names, ``"pkg.module:attr"`` or ``"pkg.module.attr"``
    (the module is imported from ``sys.path``). Raises ``ValueError`` naming ``kind``
    when the module or attribute cannot be found."""
    module, sep, attr = spec.partition(":")
    if not sep:
        module, _, attr = spec.rpartition(".")
    if not module or not attr:
        raise ValueError(f"{kind} {spec!r} is not a dotted path (use package.module:name)")
    try:
        obj: Any = importlib.import_module(module)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"cannot import {kind} {spec!r}: {err}") from None
    return obj
