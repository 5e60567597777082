"""The decode loop (model-agnostic) and the named methods."""

from ._loop import GenerationResult, GenerationStats, Target, decode
from ._methods import METHODS, Method, make_method
from ._trace import RecordingSource, TraceRecorder

__all__ = ["METHODS", "GenerationResult", "GenerationStats", "Method", "RecordingSource", "Target", "TraceRecorder", "decode", "make_method"]
