"""The decode loop (model-agnostic) and the named methods."""

from ._loop import GenerationResult, GenerationStats, Target, decode
from ._methods import METHODS, Method, make_method

__all__ = ["METHODS", "GenerationResult", "GenerationStats", "Method", "Target", "decode", "make_method"]
