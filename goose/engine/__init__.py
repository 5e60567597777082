"""The decode loop (model-agnostic), the plan that sets up one generation, the loop's
runtime checks, its statistics and trace recording."""

from ._batch import BatchResult, BatchTarget, RowParts, cut_batch, decode_batch
from ._guards import TreeError, check_prompt, check_tree
from ._loop import GenerationResult, GenerationStats, Target, decode, prefill_positions
from ._plan import LOGITS_MEMORY_BYTES, GenerationPlan, GenerationRequest, node_ceiling
from ._trace import RecordingSource, TraceRecorder

__all__ = ["LOGITS_MEMORY_BYTES", "BatchResult", "BatchTarget", "RowParts", "cut_batch", "decode_batch",
           "GenerationPlan", "GenerationRequest", "GenerationResult", "GenerationStats",
           "RecordingSource", "Target", "TraceRecorder", "TreeError", "check_prompt", "check_tree", "decode",
           "node_ceiling", "prefill_positions"]
