"""The ``goose`` command line.

Model runs: ``generate`` (stream one generation, ``--compare`` with plain decoding),
``calibrate`` (the forward cost curve ``auto`` reads), ``bench`` (every method on the
dev prompts, with baselines and peers, in one process; ``--batch-size`` /
``--samples-per-prompt``: batched decoding against transformers' batched ``generate``)
and ``bench-docs`` (the
benchmarks page from a run). Offline: ``simulate`` (the Monte Carlo simulator),
``predict`` (fit source models to traces and rank every method), ``figures`` (its
plots) and ``replay`` (a recorded trace under other settings). The
sampling commands (``simulate-sampling``, ``check-sampling``, ``compare-verifiers``,
``compare-drafting``) live in ``goose._cli_sampling``, ``predict`` in
``goose._cli_predict``, ``calibrate`` and the batched parts of ``generate`` and ``bench`` in
``goose._cli_batch``. A user's mistake is one line on
stderr with exit code 2 (``goose._cli_errors``), found before the model loads
wherever it can be.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from goose._cli_batch import bench_batched, check_repeats, generate_batch_file, read_batch_file, register_calibrate_command
from goose._cli_errors import OPTIONS, GooseGroup, UserError, check_output_dir, check_output_file
from goose._cli_predict import register_predict_command
from goose._cli_sampling import _floats, register_sampling_commands
from goose.methods import METHODS
from goose.trees import SHAPERS

NAMED = ", ".join(METHODS)
app = typer.Typer(help="goose: lossless speculative decoding with anisotropic draft trees.",
                  no_args_is_help=True, add_completion=False, cls=GooseGroup)
console = Console(width=None if Console().is_terminal else 160)


def _ints(text: str, what: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise UserError(f"{what} must be comma-separated integers, got {text!r}") from None


@app.command()
def simulate(
    alpha: float = typer.Option(0.6, help="Acceptance of a context (spine) token given its parent's."),
    betas: str = typer.Option("0.12,0.06,0.03", help="Recycled acceptances by rank, comma-separated."),
    match_prob: float = typer.Option(1.0, "--match-prob", help="Probability that a context match exists."),
    decay: float = typer.Option(1.0, help="Spine acceptance decay per depth: alpha_d = alpha * decay^(d-1)."),
    overlap: float = typer.Option(0.0, help="Probability the rank-0 recycled token equals the spine token."),
    budget: str = typer.Option("16,32,64", help="Draft-node budgets, comma-separated."),
    shapers: str = typer.Option("chain,balanced,spine,best-first",
                                help=f"Names of goose.trees.SHAPERS ({', '.join(SHAPERS)}) or dotted paths "
                                     "package.module:Class."),
    steps: int = typer.Option(20000, help="Simulated steps per configuration."),
    seed: int = typer.Option(0, help="Seed of all randomness."),
    cost_curve: Path | None = typer.Option(None, "--cost-curve", help="JSON {tokens, seconds} (goose calibrate)."),
    json_out: Path | None = typer.Option(None, "--json", help="Write results as JSON here."),
    plot: Path | None = typer.Option(None, help="Write a MAT-vs-budget PNG here."),
    quiet: bool = typer.Option(False, help="No progress bar."),
) -> None:
    """Predict tokens per step (MAT) of tree shapes from source acceptance rates."""
    from goose import theory
    from sim import ChainModel, RecycledModel, SimulationModel, closed_form, run_grid

    beta_list = _floats(betas, "--betas")
    budgets = _ints(budget, "--budget")
    names = [s.strip() for s in shapers.split(",") if s.strip()]
    model = SimulationModel(
        ChainModel(alpha, decay=decay, match_prob=match_prob) if alpha > 0 else None,
        RecycledModel(tuple(beta_list), overlap=overlap) if beta_list else None,
    )
    cost = theory.CostCurve.load(cost_curve) if cost_curve else None
    results = run_grid(model, names, budgets, steps, seed, cost, show_progress=not quiet)
    table = Table(title=f"alpha={alpha} betas={beta_list} match_prob={match_prob} steps={steps} seed={seed}")
    for col in ("shaper", "budget", "MAT", "95% CI", "theory", "accept/node", "accept/opportunity"):
        table.add_column(col)
    if cost:
        table.add_column("speed-up")
    rows = []
    for r in results:
        closed = closed_form(r.shaper, alpha, beta_list, r.budget, match_prob, decay, overlap)
        rec = r.to_json() | {"theory_mat": closed}
        rec["simulated_tree_mat"] = r.theory_mat
        rows.append(rec)
        cells = [r.shaper, str(r.budget), f"{r.mat:.3f}", f"[{r.ci95[0]:.3f}, {r.ci95[1]:.3f}]",
                 "-" if closed is None else f"{closed:.3f}",
                 ", ".join(f"{k} {v:.3f}" for k, v in r.accept_rate.items()),
                 ", ".join(f"{k} {v:.3f}" for k, v in r.accept_per_opportunity.items())]
        if cost:
            cells.append(f"{r.predicted_speedup:.2f}x")
        table.add_row(*cells)
    console.print(table)
    if json_out:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps({"params": {"alpha": alpha, "betas": beta_list, "match_prob": match_prob,
                                                   "decay": decay, "overlap": overlap, "steps": steps,
                                                   "seed": seed}, "results": rows}, indent=1))
        console.print(f"wrote {json_out}")
    if plot:
        from sim import plot_mat_vs_budget

        plot_mat_vs_budget(rows, plot, title=f"alpha={alpha}, betas={beta_list}")
        console.print(f"wrote {plot}")


@app.command()
def figures(
    out: Path = typer.Option(Path("docs/figures"), help="Folder for the PNGs."),
    steps: int = typer.Option(4000, help="Simulated steps per point."),
    seed: int = typer.Option(0),
) -> None:
    """Write the simulator's figures (MAT vs budget, gain vs gap, optimal trees, spine vs balanced)."""
    from sim import write_figures

    for path in write_figures(out, steps=steps, seed=seed):
        console.print(f"wrote {path}")


KIND_STYLE = {"spine": "bold green", "branch": "cyan", "bonus": ""}


def _plain_decoding(lm: object, ids: list[int], max_new_tokens: int, temperature: float, top_k: int,
                    top_p: float, seed: int) -> dict:
    """The baseline of ``--compare``: greedy ``model.generate`` (the output goose must equal), or
    for sampling, transformers' own sampling with the same settings."""
    from goose.bench import hf_generate

    tokens, wall = hf_generate(lm, ids, max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p, seed=seed)
    return {"how": "model.generate, " + ("sampled" if temperature > 0 else "greedy"), "tokens": tokens,
            "tokens_per_s": len(tokens) / wall, "wall_s": wall}


def _generate_request(method: str, budget: str, max_new_tokens: int, temperature: float, top_k: int, top_p: float,
                      seed: int, verifier: str) -> object:
    """The checked request of ``goose generate`` (before any model loads); warns of
    sampling options that greedy decoding ignores."""
    from goose.engine import GenerationRequest
    from goose.methods import parse_method
    from goose.verify import Sampling

    m, at = parse_method(method)
    use_budget = at if at is not None else None if budget == "default" else m.requested_budget(budget)
    sampling = Sampling(temperature, top_k, top_p, seed)
    for ignored in sampling.ignored():
        option, _, value = ignored.partition("=")
        console.print(f"[yellow]warning: {OPTIONS[option]} {value} is ignored at --temperature 0 (greedy)[/yellow]")
    return GenerationRequest(m, use_budget, sampling, max_new_tokens, None if verifier == "auto" else verifier)


@app.command()
def generate(
    prompt: str = typer.Argument("", help="The prompt (or --batch-file)."),
    model: str = typer.Option("smollm2", help="smollm2 (default), gemma3-270m, a local path or a hub id."),
    method: str = typer.Option("goose", help=f"A registered method ({NAMED}), name@B, or package.module:factory."),
    budget: str = typer.Option("auto", help="Draft nodes per step, 'auto' (from the measured cost curve; methods "
                                            "that size their own trees keep their default), or 'default'."),
    memory: str = typer.Option("lean", help="Kernel memory policy (goose.kernels.KERNEL_MEMORY): lean (no weight "
                                            "copies), one-copy, fast (several copies of the weights)."),
    max_new_tokens: int = typer.Option(128, "--max-new-tokens"),
    temperature: float = typer.Option(0.0, help="0 = greedy (token-identical to plain decoding)."),
    top_p: float = typer.Option(1.0, "--top-p"),
    top_k: int = typer.Option(0, "--top-k"),
    seed: int = typer.Option(0),
    verifier: str = typer.Option("auto", help="auto (lossless: greedy at temperature 0, else chosen from the trees), "
                                              "match, rrs or traversal under sampling, or the LOSSY greedy "
                                              "loose[-wW][-eH] (FLy-style: window W, entropy threshold H; its "
                                              "output may differ from plain decoding)."),
    chat: bool = typer.Option(True, "--chat/--raw", help="Wrap the prompt in the chat template."),
    json_out: Path | None = typer.Option(None, "--json", help="Write tokens, text and stats here."),
    stats: bool = typer.Option(False, "--stats", help="Print the time split and per-source acceptance."),
    compare: bool = typer.Option(False, "--compare", help="Also run plain decoding (ar) and show the speed-up."),
    stats_memory: bool = typer.Option(False, "--memory-stats", help="With --stats: also measure stock transformers' "
                                                                  "peak RSS on this prompt (a second process)."),
    trace: Path | None = typer.Option(None, help="Record a replay trace (JSONL) for goose replay / sim."),
    batch_file: Path | None = typer.Option(None, "--batch-file", help="JSONL prompts ('turns' or 'prompt' records, "
                                                                      "as goose bench reads) decoded as one batch."),
    n: int = typer.Option(1, "--n", help="With --batch-file: samples per prompt (best-of-N, sharing its prefill)."),
) -> None:
    """Generate text with speculative decoding, streaming it as it is committed
    (green: accepted spine tokens, cyan: accepted branch tokens, plain: the target's own);
    with ``--batch-file``, every prompt of the file in one batch."""
    import goose.hf as gh
    from goose.bench import peak_rss_mb, stock_peak_rss_mb

    request = _generate_request(method, budget, max_new_tokens, temperature, top_k, top_p, seed, verifier)
    if batch_file is not None:
        if prompt or trace or stats:
            raise UserError("--batch-file takes no PROMPT, --trace or --stats (they are for one generation)")
        batch = read_batch_file(batch_file, n, temperature)
        check_output_file(json_out, "--json")
        lm, tok = gh.load_model(model, memory=memory)
        return generate_batch_file(console, lm, tok, batch, n, chat, request, compare, json_out)
    if not prompt:
        raise UserError("the prompt is empty: give some text")
    check_output_file(json_out, "--json")
    check_output_file(trace, "--trace")
    lm, tok = gh.load_model(model, memory=memory)
    ids = gh.encode_prompt(tok, prompt, chat)
    streamer = gh.KindStreamer(tok, lambda text, kind: console.print(text, style=KIND_STYLE[kind], end="",
                                                                   markup=False, highlight=False))
    sampling = request.sampling
    out = gh.generate(lm, ids, tokenizer=tok, method=request.method, budget=request.budget,
                      max_new_tokens=max_new_tokens, temperature=sampling.temperature, top_k=sampling.top_k,
                      top_p=sampling.top_p, seed=sampling.seed, on_commit=streamer.on_commit, trace=trace,
                      verifier=request.verifier)
    streamer.end()
    console.print()
    plain = _plain_decoding(lm, ids, max_new_tokens, temperature, top_k, top_p, seed) if compare else None
    rss = {"goose_peak_mb": peak_rss_mb()}
    if stats and stats_memory:
        rss["stock_peak_mb"] = stock_peak_rss_mb(gh.local_source(model), ids, max_new_tokens)
    s = out.stats
    lossy = "" if s.lossless else " [LOSSY verifier]"
    console.print(f"[bold]{method}[/bold]{lossy}: {s.new_tokens} tokens, {s.tokens_per_s:.1f} tok/s, "
                  f"MAT {s.mat:.2f} ({s.forward_calls} forward calls)")
    for src, r in s.accept_rates().items():
        console.print(f"  {src}: {r['accepted']}/{r['drafted']} drafted accepted ({r['per_node']:.1%}), "
                      f"{r['per_opportunity']:.1%} per opportunity")
    if plain is not None:
        same = "identical tokens" if plain["tokens"] == out.tokens else "DIFFERENT tokens"
        if temperature > 0:
            same = "sampled: tokens differ by design"
        console.print(f"[bold]ar[/bold] ({plain['how']}, same process): {plain['tokens_per_s']:.1f} tok/s -> "
                      f"speed-up {s.tokens_per_s / plain['tokens_per_s']:.2f}x, {same}")
    if stats:
        j = s.to_json()
        t = j["time"]
        console.print(f"  time: prefill {t['prefill']:.3f}s, draft {t['draft']:.3f}s, forward {t['forward']:.3f}s, "
                      f"verify {t['verify']:.3f}s, commit {t['commit']:.3f}s, other {t['other']:.3f}s; "
                      f"non-forward work = "
                      f"{j['overhead_vs_forward']:.1%} of forward time; mean tree {j['mean_tree_size']:.1f} nodes")
        stock = rss.get("stock_peak_mb")
        console.print(f"  memory: peak RSS {rss['goose_peak_mb']:.0f} MiB (this process, kernels: {memory})"
                      + ("" if stock is None else f"; stock transformers generate {stock:.0f} MiB -> "
                                                  f"{rss['goose_peak_mb'] / stock:.2f}x"))
    if json_out:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        rec = {"model": model, "method": method, "prompt": prompt, "prompt_ids": ids, "tokens": out.tokens,
               "kinds": out.kinds, "text": out.text, "streamed_text": streamer.text, "finish_reason": out.finish_reason,
               "lossless": s.lossless, "verifier": verifier, "stats": s.to_json(), "memory": rss}
        if plain is not None:
            rec["ar"] = plain | {"identical": plain["tokens"] == out.tokens}
        json_out.write_text(json.dumps(rec, indent=1))
        console.print(f"wrote {json_out}")


@app.command()
def replay(
    trace: Path = typer.Argument(..., help="A trace written by goose generate --trace."),
    method: str | None = typer.Option(None, help="Method to replay (default: the recorded one)."),
    budget: str | None = typer.Option(None, help="Budgets, comma-separated: integers and/or auto (default: the "
                                                 "recorded one)."),
) -> None:
    """Replay a recorded greedy run with other methods or budgets, offline."""
    from sim import replay_method

    budgets: list[int | str | None] = [b.strip() for b in budget.split(",") if b.strip()] if budget else [None]
    for b in budgets:
        r = replay_method(trace, method, b)
        console.print(f"{method or 'recorded method'} budget={b or 'recorded'}: replayed MAT {r.mat:.3f} "
                      f"({r.forward_calls} calls); recorded run {r.recorded_mat:.3f}")


@app.command()
def bench(
    model: str = typer.Option("smollm2", help="smollm2 (default), gemma3-270m, a local path or a hub id."),
    tasks: str = typer.Option(",".join(("mt_bench", "translation", "summarization", "qa", "math_reasoning", "rag",
                                        "humaneval")),
                              help="Task names (from shared/data or $GOOSE_DATA) and/or JSONL prompt files."),
    ids: str = typer.Option("", help="Question ids, comma-separated, or 'release-dev' (the 28 prompts of the "
                                     "released GOOSE's reference run); default: the first --prompts-per-task."),
    prompts_per_task: int = typer.Option(4, "--prompts-per-task", help="Prompts per task (0 = all)."),
    methods: str = typer.Option("ar,hf_pld," + ",".join(m for m in METHODS if m != "ar"),
                                help=f"ar (= hf_ar, transformers' generate), hf_pld (K=4,10) or hf_pld_kK, and goose methods: "
                                     f"registered names ({NAMED}) or package.module:factory; name@B fixes a budget "
                                     "(an integer or auto); label=method names a goose column (goose_ar=ar)."),
    budget: str = typer.Option("", help="Budgets for budgeted methods given without @B: integers and/or auto."),
    max_new_tokens: int = typer.Option(128, "--max-new-tokens"),
    seed: int = typer.Option(0, help="Seeds torch; under sampling prompt i is drawn with seed + i by every method."),
    temperature: float = typer.Option(0.0, help="0 = greedy (the default); > 0 samples: ar is transformers' seeded "
                                                "model.generate(do_sample=True), every goose method its lossless "
                                                "sampling verifier."),
    top_p: float = typer.Option(1.0, "--top-p", help="Nucleus mass under sampling (1 = off)."),
    top_k: int = typer.Option(0, "--top-k", help="Top-k under sampling (0 = off)."),
    threads: int = typer.Option(0, help="torch threads (0 = torch's default)."),
    trace: str = typer.Option("auto", help="Method(s) whose traces feed the predictions, comma-separated: each "
                                           "traced method is replayed from its own traces, every other one from "
                                           "the first's ('auto': the first goose method with both sources; "
                                           "'none': no predictions)."),
    out: Path = typer.Option(Path("runs/bench"), help="Results directory."),
    pack: bool = typer.Option(True, "--pack/--no-pack", help="Swap in goose's linear layers (goose.kernels); "
                                                           "every method, ar included, runs on the same model."),
    memory: str = typer.Option("lean", help="Kernel memory policy: lean (no weight copies), one-copy, fast."),
    measure_memory: bool = typer.Option(True, "--measure-memory/--no-measure-memory",
                                        help="Record this run's peak RSS and stock transformers' on the first prompt."),
    batch_size: str = typer.Option("", "--batch-size", help="Batched decoding at these batch sizes (e.g. 1,4,8): "
                                                            "ar is transformers' batched generate at the same size."),
    samples_per_prompt: int = typer.Option(1, "--samples-per-prompt", help="Best-of-N: N samples of each prompt "
                                           "in one batch (--temperature > 0); ar: generate(num_return_sequences=N)."),
    repeats: int = typer.Option(1, help="Batched runs: run every column this many times per batch, timed by the median."),
) -> None:
    """Benchmark goose's methods side by side with plain decoding and transformers'
    prompt lookup: interleaved per prompt in one process; JSONL records, summary JSON,
    markdown and PNG plots under --out."""
    import sys

    import torch

    import goose.hf as gh
    from goose import bench as gb

    id_list = [x.strip() for x in ids.split(",") if x.strip()]
    task_list = [t.strip() for t in tasks.split(",") if t.strip()]
    ref = gb.find_reference(id_list[0]) if len(id_list) == 1 else None  # a reference run's prompts
    if ref is not None:
        task_list, id_list = list(ref["ids"]), [q for qs in ref["ids"].values() for q in qs]
    budgets = [b.strip() for b in budget.split(",") if b.strip()]
    ms = gb.parse_methods(methods, budgets)
    check_output_dir(out, "--out")
    prompts = gb.load_prompts(task_list, id_list, prompts_per_task or None)
    sampling = gb.Sampling(temperature, top_k, top_p, seed) if temperature > 0 else None
    if sampling is not None and trace == "auto":
        trace = "none"  # replay predictions model greedy acceptance
    trace_label = gb.default_trace_label(ms) if trace == "auto" else None if trace == "none" else trace
    trace_labels = [t.strip() for t in (trace_label or "").split(",") if t.strip()]
    goose_labels = {m.label for m in ms if m.kind == "goose"}
    if bad := [t for t in trace_labels if t not in goose_labels]:
        raise UserError(f"--trace: {', '.join(bad)} is not one of this run's goose methods "
                        f"({', '.join(sorted(goose_labels)) or 'none'})")
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    sizes = _ints(batch_size, "--batch-size")
    if any(b < 1 for b in sizes) or samples_per_prompt < 1:
        raise UserError("--batch-size and --samples-per-prompt take integers >= 1")
    if samples_per_prompt > 1 and sampling is None:
        raise UserError("--samples-per-prompt > 1 draws samples: pass --temperature > 0")
    check_repeats(repeats, batched=bool(sizes) or samples_per_prompt > 1)
    lm, tok = gh.load_model(model, pack=pack, memory=memory)
    if sizes or samples_per_prompt > 1:
        bench_batched(console, lm, tok, model, prompts, ms, max_new_tokens, out, sizes, samples_per_prompt, sampling,
                      measure_memory, repeats)
        return
    console.print(f"{len(prompts)} prompts x {len(ms)} methods: {', '.join(m.label for m in ms)}")
    records = gb.run_bench(lm, tok, prompts, ms, max_new_tokens, out, trace_method=trace_labels,
                           log=lambda s: console.print(f"[red]{s}[/red]"), sampling=sampling)
    rss = {"goose_bench_peak_mb": gb.peak_rss_mb()}
    if measure_memory and prompts:
        first = gh.encode_prompt(tok, prompts[0].text, prompts[0].chat)
        rss["stock_generate_peak_mb"] = gb.stock_peak_rss_mb(gh.local_source(model), first, max_new_tokens,
                                                             torch.get_num_threads())
    meta = gb.run_meta(lm, model, "goose " + " ".join(sys.argv[1:]), ms, len(prompts), max_new_tokens, seed,
                       trace_label, pack, memory, rss, None if sampling is None else sampling.to_json())
    (out / "meta.json").write_text(json.dumps(meta, indent=1))
    predictions = None
    if trace_labels and sampling is None:  # replays follow a greedy text; sampled traces: sim.predict_sampling
        from sim import predict_bench

        auto = any(m.budget == "auto" for m in ms)  # their trees were cut by this (cached) curve
        predictions = predict_bench(out, records, cost=gh.calibrate(lm) if auto else None)
    summary = gb.write_outputs(out, records, meta, predictions)
    table = Table(title=f"{model}: {len(prompts)} prompts, {max_new_tokens} new tokens (all tasks pooled)")
    for col in ("method", "MAT", "tok/s", "speed-up vs ar", "identical to ar"):
        table.add_column(col)
    for m, c in summary["overall"].items():
        table.add_row(m if c.get("lossless", True) else f"{m} (LOSSY)", f"{c['mat']:.2f}", f"{c['tokens_per_s']:.1f}",
                      "-" if c.get("speedup_vs_ar") is None else f"{c['speedup_vs_ar']:.2f}x",
                      "- (sampling)" if sampling is not None else c["identical_count"])
    console.print(table)
    if summary["errors"]:
        console.print(f"[red]{len(summary['errors'])} failed run(s): see {out / 'results.md'}[/red]")
    console.print(f"wrote {out}/records.jsonl, summary.json, results.md and plots")


@app.command("bench-docs")
def bench_docs(
    run: Path = typer.Argument(..., help="A goose bench results directory."),
    docs: Path = typer.Option(Path("docs/benchmarks.md"), help="The page to (re)write."),
    section: str | None = typer.Option(None, help="(Re)write only this titled section of the page from the run "
                                                  "(e.g. a sampling run); the rest of the page is kept."),
) -> None:
    """Regenerate the docs' benchmark page from a goose bench results directory."""
    from goose.bench import write_docs

    if not (run / "summary.json").is_file():
        raise UserError(f"{run} holds no summary.json: run goose bench --out {run} first")
    console.print(f"wrote {write_docs(run, docs, section)}")


register_sampling_commands(app, console)
register_predict_command(app, console)
register_calibrate_command(app, console)

if __name__ == "__main__":
    app()
