"""What a benchmark run records about itself, and which column feeds its predictions."""

from __future__ import annotations

import datetime
import platform
from collections.abc import Sequence
from typing import Any

from ._run import BenchMethod

__all__ = ["default_trace_label", "run_meta"]


def default_trace_label(methods: Sequence[BenchMethod]) -> str | None:
    """The column whose traces feed the predictions by default: the first goose
    method that draws on both sources at a fixed (or default) budget."""
    both = [m for m in methods if m.kind == "goose" and m.budget != "auto" and "both-sources" in m.tags]
    return both[0].label if both else None


def run_meta(model: Any, model_name: str, command: str, methods: Sequence[BenchMethod], prompts: int,
             max_new_tokens: int, seed: int, trace_label: str | None, pack: bool, memory: str,
             rss: dict | None = None, sampling: dict | None = None) -> dict:
    """The protocol of a ``goose bench`` run (goes to ``meta.json`` and the report)."""
    import torch
    import transformers

    from ..hf import describe_verify_head
    from ..kernels import cpu_name, describe_linear_plans

    threads = torch.get_num_threads()
    return {"command": command, "model": model_name, "dtype": str(model.dtype).replace("torch.", ""),
            "max_new_tokens": max_new_tokens, "threads": threads, "seed": seed,
            "machine": f"{platform.processor() or platform.machine()}, {cpu_name()}, {threads} threads",
            "torch": torch.__version__, "transformers": transformers.__version__, "prompts": prompts,
            "methods": [m.label for m in methods], "trace_method": trace_label, "packed_linears": pack,
            "kernel_memory": memory, "linear_kernels": describe_linear_plans(model),
            "verify_head": describe_verify_head(model, sampling is not None), "memory": rss or {}, "sampling": sampling,
            "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")}
