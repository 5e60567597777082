"""The batched side of the command line, kept out of ``goose.cli`` for length:
``goose generate --batch-file``, ``goose calibrate`` (the single and the batched cost
curve) and ``goose bench --batch-size`` / ``--samples-per-prompt`` (whose work
``goose.bench.run_batch_bench`` does)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from goose._cli_errors import UserError, check_output_file

__all__ = ["bench_batched", "check_repeats", "generate_batch_file", "read_batch_file", "register_calibrate_command"]


def read_batch_file(path: Path, n: int, temperature: float) -> list:
    """The prompts of ``goose generate --batch-file`` (the bench's JSONL records: ``turns``
    or ``prompt``), checked before any model loads: every prompt has text, ``n >= 1``, and
    several samples per prompt only when sampling."""
    from goose.bench import read_prompt_file

    if isinstance(n, bool) or n < 1:
        raise UserError(f"--n (samples per prompt) must be >= 1, got {n}")
    if n > 1 and temperature <= 0:
        raise UserError("--n > 1 draws samples: pass --temperature > 0 (greedy rows would all be the same)")
    prompts = read_prompt_file(path)
    for p in prompts:
        if not p.text.strip():
            raise UserError(f"{p.origin}: the prompt is empty")
    return prompts


def generate_batch_file(console: Console, lm: Any, tok: Any, prompts: list, n: int, chat: bool, request: Any,
                        compare: bool, json_out: Path | None) -> None:
    """``goose generate --batch-file``: every prompt (``n`` samples each) decoded as one
    batch; per row its text and MAT, then the batch's throughput (and with ``compare``,
    transformers' batched ``generate`` on the same rows, greedy rows checked token for
    token). ``turns`` records are chat turns; ``prompt`` records follow ``--chat/--raw``."""
    import goose.hf as gh
    from goose.bench import hf_generate_batch

    rows = [gh.encode_prompt(tok, p.text, p.chat or chat) for p in prompts]
    s = request.sampling
    out = gh.generate_batch(lm, rows, tokenizer=tok, method=request.method, budget=request.budget, n=n,
                            max_new_tokens=request.max_new_tokens, temperature=s.temperature, top_k=s.top_k,
                            top_p=s.top_p, seed=s.seed, verifier=request.verifier)
    plain = None
    if compare:
        eos = gh.eos_ids(lm, None)
        tokens, wall = hf_generate_batch(lm, rows, request.max_new_tokens, eos, n,
                                         s if s.temperature > 0 else None)
        plain = {"how": "transformers' batched generate (left padding), " + ("sampled" if s.temperature > 0
                                                                             else "greedy"),
                 "tokens_per_s": sum(map(len, tokens)) / wall, "wall_s": wall, "tokens": tokens}
    lossy = all(not r.stats.lossless for r in out)
    records = []
    for i, r in enumerate(out):
        p = prompts[i // n]
        same = None if plain is None or s.temperature > 0 else plain["tokens"][i] == r.tokens
        console.print(f"[bold]row {i}[/bold] ({p.origin}{f', sample {i % n}' if n > 1 else ''}): "
                      f"{len(r.tokens)} tokens, MAT {r.stats.mat:.2f}, {r.finish_reason}"
                      + ("" if same is None else ", identical to generate" if same else ", DIFFERENT from generate"))
        console.print(r.text, markup=False, highlight=False)
        records.append({"row": i, "origin": p.origin, "question_id": p.qid, "sample": i % n, "prompt": p.text,
                        "tokens": r.tokens, "text": r.text, "finish_reason": r.finish_reason, "mat": r.stats.mat,
                        "lossless": r.stats.lossless} | ({} if same is None else {"identical_to_generate": same}))
    label = f"{request.method.name}{' [LOSSY verifier]' if lossy else ''}"
    console.print(f"[bold]{label}[/bold], {len(out)} rows: {out.new_tokens} tokens, {out.tokens_per_s:.1f} tok/s "
                  f"over the batch, pooled MAT {out.mat:.2f} ({out.forward_calls} batched passes)")
    if plain is not None:
        console.print(f"[bold]ar[/bold] ({plain['how']}, same process): {plain['tokens_per_s']:.1f} tok/s -> "
                      f"speed-up {out.tokens_per_s / plain['tokens_per_s']:.2f}x")
    if json_out:
        summary = {"method": request.method.name, "lossless": not lossy, "n": n, "batch": out.to_json(),
                   "rows": records} | ({} if plain is None else {"ar": plain})
        json_out.write_text(json.dumps(summary, indent=1))
        console.print(f"wrote {json_out}")


def register_calibrate_command(app: typer.Typer, console: Console) -> None:
    """Add ``goose calibrate`` to ``app``."""

    @app.command()
    def calibrate(
        model: str = typer.Option("smollm2", help="Named model, local path or hub id."),
        out: Path | None = typer.Option(None, help="Also write the curve (JSON) here, for goose simulate --cost-curve."),
        memory: str = typer.Option("lean", help="Kernel memory policy: lean, one-copy, fast."),
        batch: bool = typer.Option(False, "--batch/--no-batch", help="Also measure the batched curve c(rows, width) "
                                                                    "that batch-aware auto reads (kept for it)."),
        batch_out: Path | None = typer.Option(None, "--batch-out", help="Write the batched curve (JSON) here."),
        sampling: bool = typer.Option(False, "--sampling/--greedy", help="Measure the curves sampling runs read "
                                      "(bounded logits for sample-and-match, float32 logits for verifiers that read "
                                      "the target's law) instead of the greedy one; with --batch, the batched "
                                      "sampling curve."),
    ) -> None:
        """Measure the forward cost c(n) of tree passes over n tokens on this device (with
        ``--batch``, also of batched passes over 1-8 rows) and keep it for ``auto``,
        replacing the cached curve: greedy ``auto``'s by default, the sampling runs' with
        ``--sampling``."""
        import goose.hf as gh

        check_output_file(out, "--out")
        check_output_file(batch_out, "--batch-out")
        lm, _ = gh.load_model(model, memory=memory)
        # the kinds of pass auto reads a curve for (GenerationRequest.cost_kind): (argmax_only, bounded)
        kinds = [(False, True), (False, False)] if sampling else [(True, False)]
        curves = []
        for argmax_only, bounded in kinds:
            if sampling:
                console.print(f"[bold]{'bounded' if bounded else 'float32'} logits[/bold] "
                              f"({'sample-and-match' if bounded else 'verifiers that read the target law'}):")
            curves.append(gh.calibrate(lm, argmax_only=argmax_only, bounded=bounded, refresh=True))  # auto reads it now
            _print_curve(console, curves[-1])
        _write_curve(console, curves[0], out)  # with --sampling: sample-and-match's (bounded logits)
        if batch or batch_out:
            _calibrate_batched(console, gh.calibrate_batch(lm, argmax_only=not sampling, refresh=True), batch_out)


def _print_curve(console: Console, curve: Any) -> None:
    """One line per pass size, per context length the curve holds."""
    for length in curve.contexts if curve.contexts is not None else [None]:
        if length is not None:
            console.print(f"after {int(length)} tokens of context:")
        one = curve(1, context=length)
        for k in curve.tokens:
            c = curve(k, context=length)
            console.print(f"  c({int(k):>2}) = {1000 * c:7.1f} ms   ({c / one:.2f}x one token)")
    for n, sec in curve.prefill if curve.prefill is not None else []:
        console.print(f"prefill of {int(n)} tokens: {1000 * sec:.0f} ms ({1000 * sec / n:.2f} ms a token)")


def _calibrate_batched(console: Console, curve: Any, out: Path | None) -> None:
    """Print the batched curve, rows by widths, in ms (and per token of the pass)."""
    from rich.table import Table

    table = Table(title="batched pass c(rows, width), ms (ms per token)")
    table.add_column("rows")
    for w in curve.tokens:
        table.add_column(f"w={int(w)}")
    for r in curve.contexts:
        table.add_row(str(int(r)), *(f"{1000 * curve(w, context=r):.0f} ({1000 * curve(w, context=r) / (r * w):.1f})"
                                     for w in curve.tokens))
    console.print(table)
    _write_curve(console, curve, out)


def _write_curve(console: Console, curve: Any, out: Path | None) -> None:
    """Write a cost curve's JSON (what ``goose simulate --cost-curve`` reads) to ``out``, if given."""
    if out:
        out.write_text(json.dumps(curve.to_json()))
        console.print(f"wrote {out}")


def check_repeats(repeats: int, batched: bool) -> None:
    """``goose bench --repeats``: at least 1, and only for batched runs."""
    if repeats < 1:
        raise UserError(f"--repeats must be >= 1, got {repeats}")
    if repeats > 1 and not batched:
        raise UserError("--repeats times batched runs (--batch-size, --samples-per-prompt); single-sequence runs "
                        "state their noise with a repeated column (e.g. bf2=best-first@auto)")


def bench_batched(console: Console, lm: object, tok: object, model: str, prompts: list, ms: list, max_new_tokens: int, out: Path,
                   sizes: list[int], n: int, sampling: object, measure_memory: bool, repeats: int = 1) -> None:
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
                                 log=lambda x: console.print(f"[red]{x}[/red]"), repeats=repeats)
    summary = {"command": "goose " + " ".join(sys.argv[1:]), "max_new_tokens": max_new_tokens, "repeats": repeats,
               "samples_per_prompt": n, "threads": torch.get_num_threads(), "by_size": gb.summarize_batch(records)}
    goose_cols = [m for m in ms if m.kind == "goose"]
    if measure_memory and goose_cols and sizes and sampling is None:
        big = max(sizes)
        rows = [gh.encode_prompt(tok, p.text, p.chat) for p in prompts[:big]]
        summary["memory"] = {"batch_size": len(rows), "method": goose_cols[0].name} | gb.batch_peak_rss_mb(
            model, gh.local_source(model), rows, max_new_tokens, goose_cols[0].name, torch.get_num_threads())
    (out / "summary-batch.json").write_text(json.dumps(summary, indent=1))
    md = gb.batch_markdown(summary["by_size"], n)
    if repeats > 1:
        md = (f"Every column ran {repeats} times per batch, in alternating order; each batch is timed by the "
              f"median of its runs (records: `walls_s`).\n\n{md}")
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
