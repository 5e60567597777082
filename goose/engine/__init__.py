"""The decode loop (model-agnostic), its statistics and trace recording."""

from ._loop import GenerationResult, GenerationStats, Target, decode, prefill_positions
from ._trace import RecordingSource, TraceRecorder

__all__ = ["GenerationResult", "GenerationStats", "RecordingSource", "Target", "TraceRecorder", "decode",
           "prefill_positions"]
