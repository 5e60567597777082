"""Decoding methods: one registry of named methods, each a factory of fresh drafting
parts with its own budget rules (:class:`Method`), found by name, by dotted path
(``package.module:factory``) or through the ``goose.methods`` entry-point group."""

from ._builtin import BUILTIN_METHODS
from ._method import AUTO_MAX_BUDGET, Drafting, Memory, Method, MethodContext
from ._registry import ENTRY_POINT_GROUP, METHODS, get_method, make_method, parse_method, register_method

__all__ = [
    "AUTO_MAX_BUDGET",
    "BUILTIN_METHODS",
    "ENTRY_POINT_GROUP",
    "METHODS",
    "Drafting",
    "Memory",
    "Method",
    "MethodContext",
    "get_method",
    "make_method",
    "parse_method",
    "register_method",
]
