"""Benchmarks: goose's methods next to plain decoding and transformers' prompt lookup,
interleaved in one process, with summaries, plots and a docs page (``goose bench``)."""

from ._batch import batch_markdown, hf_generate_batch, near_tie, run_batch_bench, summarize_batch
from ._docs import write_docs
from ._memory import batch_peak_rss_mb, peak_rss_mb, stock_peak_rss_mb
from ._meta import default_trace_label, run_meta
from ._prompts import TASKS, BenchPrompt, data_dir, find_reference, load_prompts, load_reference, read_prompt_file
from ._release import matching_reference, release
from ._report import checks, markdown, plot, sampling_checks, summarize, write_outputs
from ._run import BenchMethod, Sampling, hf_generate, parse_methods, run_bench, trace_path
from ._samecheck import homogeneity_pvalue, sample_first_tokens, two_sample_check
from ._sametree import DraftingJudge, SameTreeJudge, drafting_gain, same_tree_mat

__all__ = [
    "TASKS",
    "BenchMethod",
    "BenchPrompt",
    "DraftingJudge",
    "SameTreeJudge",
    "Sampling",
    "batch_markdown",
    "batch_peak_rss_mb",
    "checks",
    "data_dir",
    "default_trace_label",
    "drafting_gain",
    "find_reference",
    "hf_generate",
    "hf_generate_batch",
    "homogeneity_pvalue",
    "load_prompts",
    "load_reference",
    "read_prompt_file",
    "markdown",
    "matching_reference",
    "near_tie",
    "parse_methods",
    "peak_rss_mb",
    "plot",
    "release",
    "run_batch_bench",
    "run_bench",
    "run_meta",
    "sampling_checks",
    "same_tree_mat",
    "sample_first_tokens",
    "stock_peak_rss_mb",
    "summarize",
    "summarize_batch",
    "trace_path",
    "two_sample_check",
    "write_docs",
    "write_outputs",
]
