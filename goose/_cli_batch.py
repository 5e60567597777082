"""``goose bench --batch-size`` / ``--samples-per-prompt``: the batched run's command-line
side (``goose.bench.run_batch_bench`` does the work), kept out of ``goose.cli`` for length."""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console

__all__ = ["bench_batched"]


def bench_batched(console: Console, lm: object, tok: object, model: str, prompts: list, ms: list, max_new_tokens: int, out: Path,
                   sizes: list[int], n: int, sampling: object, measure_memory: bool) -> None:
    """``goose bench --batch-size`` / ``--samples-per-prompt``: the batched columns, their
    records, summary, markdown, plot and (greedy) the peak memory at the largest size."""
    import sys

    import torch

    import goose.hf as gh
    from goose import bench as gb

    dropped = [m.label for m in ms if m.kind == "hf" and m.k]
    ms = [m for m in ms if not (m.kind == "hf" and m.k)]
    if dropped:
        console.print(f"batched run: {', '.join(dropped)} left out (transformers' prompt lookup runs at batch size 1)")
    console.print(f"{len(prompts)} prompts, batch sizes {sizes or [n]}: {', '.join(m.label for m in ms)}")
    records = gb.run_batch_bench(lm, tok, prompts, ms, max_new_tokens, out, sizes, n, sampling,
                                 log=lambda x: console.print(f"[red]{x}[/red]"))
    summary = {"command": "goose " + " ".join(sys.argv[1:]), "max_new_tokens": max_new_tokens,
               "samples_per_prompt": n, "threads": torch.get_num_threads(), "by_size": gb.summarize_batch(records)}
    goose_cols = [m for m in ms if m.kind == "goose"]
    if measure_memory and goose_cols and sizes and sampling is None:
        big = max(sizes)
        rows = [gh.encode_prompt(tok, p.text, p.chat) for p in prompts[:big]]
        summary["memory"] = {"batch_size": len(rows), "method": goose_cols[0].name} | gb.batch_peak_rss_mb(
            model, gh.local_source(model), rows, max_new_tokens, goose_cols[0].name, torch.get_num_threads())
    (out / "summary-batch.json").write_text(json.dumps(summary, indent=1))
    md = gb.batch_markdown(summary["by_size"], n)
    if "memory" in summary:
        mem = summary["memory"]
        md += (f"\nPeak RSS at B = {mem['batch_size']} (fresh processes): goose {mem['method']} "
               f"{mem['goose_batch_peak_mb']:.0f} MiB, transformers' batched generate "
               f"{mem['stock_batch_generate_peak_mb']:.0f} MiB "
               f"({mem['goose_batch_peak_mb'] / mem['stock_batch_generate_peak_mb']:.2f}x)\n")
    (out / "results-batch.md").write_text(f"# Batched decoding\n\n`{summary['command']}`\n\n{md}")
    _plot_batched(summary["by_size"], out / "throughput-batch.png")
    console.print(md)
    console.print(f"wrote {out}/records-batch.jsonl, summary-batch.json, results-batch.md, throughput-batch.png")


def _plot_batched(by_size: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    labels = list(dict.fromkeys(label for cols in by_size.values() for label in cols))
    for label in labels:
        xs = [int(b) for b, cols in by_size.items() if label in cols]
        ax.plot(xs, [by_size[str(b)][label]["tokens_per_s"] for b in xs], marker="o", label=label)
    ax.set_xlabel("rows per batch")
    ax.set_ylabel("tokens/s (whole batch)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
