"""Benchmarks: goose's methods next to plain decoding and transformers' prompt lookup,
interleaved in one process, with summaries, plots and a docs page (``goose bench``)."""

from ._prompts import RELEASE_DEV_IDS, TASKS, BenchPrompt, data_dir, load_prompts
from ._report import checks, markdown, plot, summarize, write_docs, write_outputs
from ._run import BenchMethod, hf_generate, parse_methods, run_bench, trace_path

__all__ = [
    "RELEASE_DEV_IDS",
    "TASKS",
    "BenchMethod",
    "BenchPrompt",
    "checks",
    "data_dir",
    "hf_generate",
    "load_prompts",
    "markdown",
    "parse_methods",
    "plot",
    "run_bench",
    "summarize",
    "trace_path",
    "write_docs",
    "write_outputs",
]
