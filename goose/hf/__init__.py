"""Hugging Face transformers adapter: the only package of goose that imports transformers.

One job per module: the target (:class:`HFTarget`: masks, prefill, tree pass,
commit, rewind), the cache layer, the verification head (:class:`VerifyHead`),
named models and their conversion (:func:`load_model`), calibration
(:func:`calibrate`), a draft model as a token source (:class:`DraftModelSource`), and
generation (:func:`generate`, :class:`Session`, :func:`custom_generate`) and streaming its
text (:class:`KindStreamer`). The CPU linear
kernels are torch-only: :mod:`goose.kernels`.
"""

from typing import Any

from ._batch import HFBatchTarget
from ._cache import growing_layer_class, new_cache
from ._calibrate import (
    BATCH_CALIBRATION_ROWS,
    BATCH_CALIBRATION_WIDTHS,
    CALIBRATION_CONTEXTS,
    CALIBRATION_SIZES,
    calibrate,
    calibrate_batch,
)
from ._draft import DraftModelSource
from ._generate import (
    ProcessorVerifier,
    Session,
    custom_generate,
    encode_prompt,
    eos_ids,
    generate,
    generate_batch,
    resolve_method,
)
from ._head import VerifyHead, cpu_has_fast_bf16
from ._models import ALIASES, NAMED_MODELS, load_model, local_source, model_path
from ._stream import KindStreamer
from ._target import SUPPORTED_ARCHITECTURES, SUPPORTED_ATTENTION, HFTarget


def describe_verify_head(model: Any, sampling: bool = False) -> str:
    """How goose's greedy (or, with ``sampling``, sampling) tree passes compute the
    vocabulary projection on ``model``."""
    head = VerifyHead(model)
    if sampling and head.bounds:
        return ("bfloat16 with rigorous error bounds for sample-and-match, float32 entries (rarely a row) where a "
                "draw needs them (the exact law; `goose.verify.sample_bounded`); float32 rows for the verifiers "
                "that read q")
    if head.bf16 and not sampling:
        return ("bfloat16, then float32 for every entry that could be among a row's 10 largest "
                "(exact argmax and top 10; `goose.hf.VerifyHead.argmax_exact_logits`)")
    return "float32 (the model's own head)"


__all__ = [
    "ALIASES",
    "BATCH_CALIBRATION_ROWS",
    "BATCH_CALIBRATION_WIDTHS",
    "CALIBRATION_CONTEXTS",
    "CALIBRATION_SIZES",
    "NAMED_MODELS",
    "SUPPORTED_ARCHITECTURES",
    "SUPPORTED_ATTENTION",
    "DraftModelSource",
    "HFBatchTarget",
    "HFTarget",
    "KindStreamer",
    "ProcessorVerifier",
    "Session",
    "VerifyHead",
    "calibrate",
    "calibrate_batch",
    "cpu_has_fast_bf16",
    "custom_generate",
    "describe_verify_head",
    "encode_prompt",
    "eos_ids",
    "generate",
    "generate_batch",
    "growing_layer_class",
    "load_model",
    "local_source",
    "model_path",
    "new_cache",
    "resolve_method",
]
