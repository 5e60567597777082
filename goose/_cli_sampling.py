"""The sampling commands of the CLI: ``goose simulate-sampling`` (predict the MAT of the
sampling verifiers before any model runs), ``goose check-sampling`` (a per-position
two-sample test of goose's samples against transformers' own), ``goose
compare-verifiers`` (verifiers that read q on the very same drawn trees) and ``goose
compare-drafting`` (drawn children against their top-k control on the same nodes)."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from goose._cli_errors import UserError

__all__ = ["register_sampling_commands"]


def _floats(text: str, what: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise UserError(f"{what} must be comma-separated numbers, got {text!r}") from None


# options shared by the commands that sample benchmark prompts
_MODEL = typer.Option("smollm2", help="smollm2 (default), gemma3-270m, a local path or a hub id.")
_IDS = typer.Option("release-dev", help="Question ids, comma-separated, or 'release-dev'.")
_TASKS = typer.Option("mt_bench,translation,summarization,qa,math_reasoning,rag,humaneval",
                      help="Tasks the ids come from.")
_MAX_NEW_TOKENS = typer.Option(128)
_TEMPERATURE = typer.Option(0.8)
_SEED = typer.Option(0)
_TOP_P = typer.Option(1.0, "--top-p")
_TOP_K = typer.Option(0, "--top-k")
_JSON = typer.Option(None, "--json", help="Write the results as JSON here.")


def _bench_prompts(command: str, model: str, ids: str, tasks: str, temperature: float) -> tuple:
    """``(model, encoded prompts)`` of a command that samples benchmark prompts."""
    import goose.hf as gh
    from goose import bench as gb

    if temperature <= 0:
        raise ValueError(f"{command} samples: give --temperature > 0")
    id_list = [x.strip() for x in ids.split(",") if x.strip()]
    task_list = [t.strip() for t in tasks.split(",") if t.strip()]
    ref = gb.find_reference(id_list[0]) if len(id_list) == 1 else None
    if ref is not None:
        task_list, id_list = list(ref["ids"]), [q for qs in ref["ids"].values() for q in qs]
    prompts = gb.load_prompts(task_list, id_list, None)
    lm, tok = gh.load_model(model)
    return lm, [gh.encode_prompt(tok, p.text, p.chat) for p in prompts]


def register_sampling_commands(app: typer.Typer, console: Console) -> None:
    """Add the sampling commands to ``app``."""

    def _show(table: Table, res: object, json_out: Path | None) -> None:
        console.print(table)
        if json_out:
            json_out.write_text(json.dumps(res, indent=1))

    @app.command("simulate-sampling")
    def simulate_sampling_cmd(
        closeness: str = typer.Option("0,0.25,0.5,0.75,0.9", help="How close the draft q is to the target p: "
                                                                 "q = (1 - c) d + c p, comma-separated values of c."),
        vocab: int = typer.Option(8, help="Vocabulary size of the simulated target."),
        concentration: float = typer.Option(0.5, help="Dirichlet concentration of p and d (small: peaked)."),
        children: int = typer.Option(2, help="Children per node (top-k for match, drawn for rrs/traversal)."),
        depth: int = typer.Option(3, help="Tree depth."),
        steps: int = typer.Option(400, help="Steps per world."),
        worlds: int = typer.Option(10, help="Random worlds (p, q at every path) per closeness."),
        seed: int = typer.Option(0, help="Seed of all randomness."),
        json_out: Path | None = typer.Option(None, "--json", help="Write results as JSON here."),
    ) -> None:
        """Predict the MAT of sample-and-match (top-k drafts), recursive rejection sampling and
        Traversal Verification (drafts drawn from q) before any model runs."""
        from sim import SAMPLING_VERIFIERS, SamplingWorld, simulate_sampling

        cs = _floats(closeness, "--closeness")
        rows = [{"closeness": c} | {v: simulate_sampling(SamplingWorld(vocab, concentration, c, children, depth, seed),
                                                         v, steps, seed, worlds) for v in SAMPLING_VERIFIERS}
                for c in cs]
        table = Table(title=f"sampling MAT: vocab {vocab}, {children} children per node, depth {depth}, "
                            f"{worlds} worlds x {steps} steps")
        for col in ("closeness", *SAMPLING_VERIFIERS):
            table.add_column(col)
        for r in rows:
            table.add_row(f"{r['closeness']:g}", *(f"{r[v]['mat']:.3f} ± {r[v]['se']:.3f}" for v in SAMPLING_VERIFIERS))
        _show(table, rows, json_out)


    @app.command("check-sampling")
    def check_sampling(
        methods: str = typer.Option("goose,stand/rrs,stand/traversal,goose-stand/traversal",
                                    help="goose sampling methods, NAME or NAME/VERIFIER, comma-separated."),
        model: str = typer.Option("smollm2", help="smollm2 (default), gemma3-270m, a local path or a hub id."),
        prompt: str = typer.Option("Tell me a short story about a dragon.", help="One short prompt (a chat turn)."),
        samples: int = typer.Option(1000, help="Samples per method (and of transformers' sampling)."),
        positions: int = typer.Option(4, help="Emitted positions compared, from the first."),
        temperature: float = typer.Option(0.8),
        top_p: float = typer.Option(1.0, "--top-p"),
        seed: int = typer.Option(0),
        alpha: float = typer.Option(1e-3, help="False-positive rate of each per-position test."),
        json_out: Path | None = typer.Option(None, "--json", help="Write the results as JSON here."),
        batch: int = typer.Option(1, help="Draw goose's samples as the rows of best-of-BATCH batches "
                                          "(goose.generate_batch)."),
    ) -> None:
        """Two-sample test per position of each goose sampling method against transformers'
        model.generate(do_sample=True) on one prompt: lossless methods pass."""
        import goose.hf as gh
        from goose.bench import two_sample_check

        if samples < 1 or positions < 1 or temperature <= 0 or batch < 1:
            raise UserError("samples, positions and batch must be >= 1 and temperature > 0")
        lm, tok = gh.load_model(model)
        ids = gh.encode_prompt(tok, prompt, chat=True)
        names = [m.strip() for m in methods.split(",") if m.strip()]
        res = two_sample_check(lm, ids, names, samples, positions, temperature, top_p, seed, alpha,
                               batch=batch) | {"prompt": prompt}
        table = Table(title=f"{samples} samples per method, T={temperature:g}, top-p {top_p:g}: chi-square p-values "
                            f"per position (alpha {alpha:g} per test; {res['tests']} tests, family-wise <= "
                            f"{res['family_false_positive_bound']:.3g})")
        for col in ("method", *(f"pos {i + 1}" for i in range(positions)), "verdict"):
            table.add_column(col)
        for m, r in res["methods"].items():
            table.add_row(m, *(f"{p:.3f}" for p in r["pvalues"]), "same law" if r["passed"] else "DIFFERENT")
        _show(table, res, json_out)

    @app.command("compare-verifiers")
    def compare_verifiers(
        method: str = typer.Option("goose-stand", help="A method that draws children from q (its trees are compared)."),
        verifiers: str = typer.Option("rrs,traversal", help="Verifiers that read q, comma-separated: the first is "
                                                           "the baseline of the paired differences."),
        model: str = _MODEL,
        ids: str = _IDS,
        tasks: str = _TASKS,
        repeats: int = typer.Option(20, help="Verifications per tree and verifier."),
        max_new_tokens: int = _MAX_NEW_TOKENS,
        temperature: float = _TEMPERATURE,
        top_p: float = _TOP_P,
        top_k: int = _TOP_K,
        seed: int = _SEED,
        json_out: Path | None = _JSON,
    ) -> None:
        """Verifiers that read q on the very same trees: each drawn tree of one generation is
        verified many times by each, and the mean accepted lengths are compared tree by tree."""
        from goose import bench as gb

        lm, enc = _bench_prompts("compare-verifiers", model, ids, tasks, temperature)
        names = [v.strip() for v in verifiers.split(",") if v.strip()]
        res = gb.same_tree_mat(lm, enc, method, names, repeats, temperature, top_k, top_p, seed, max_new_tokens)
        table = Table(title=f"{method}: {res['trees']} drawn trees of {res['prompts']} prompts, {repeats} "
                            f"verifications per tree and verifier, T={temperature:g}, top-p {top_p:g}")
        for col in ("verifier", "mean accepted per tree", f"difference from {names[0]} (± SE)", "MAT ratio"):
            table.add_column(col)
        for v in names:
            diff = res["vs_" + names[0]].get(v)
            table.add_row(v, f"{res['mean_accepted'][v]:.4f}",
                          "" if diff is None else f"{diff['mean_difference']:+.4f} ± {diff['se']:.4f}",
                          "1" if diff is None else f"{diff['ratio_of_mat']:.4f}")
        _show(table, res, json_out)

    @app.command("compare-drafting")
    def compare_drafting(
        method: str = typer.Option("goose-stand", help="A method that draws children from q."),
        model: str = _MODEL,
        ids: str = _IDS,
        tasks: str = _TASKS,
        max_new_tokens: int = _MAX_NEW_TOKENS,
        samples: int = typer.Option(1, help="Generations per prompt, sharing one memory per prompt (best-of-N)."),
        temperature: float = _TEMPERATURE,
        top_p: float = _TOP_P,
        top_k: int = _TOP_K,
        seed: int = _SEED,
        json_out: Path | None = _JSON,
    ) -> None:
        """Drawn children against their deterministic control on the very same nodes: at
        each node that drew, the exact probability that its children are accepted, drawn
        (rejection sampling) and as the top-k of the same q (sample-and-match)."""
        from goose import bench as gb

        lm, enc = _bench_prompts("compare-drafting", model, ids, tasks, temperature)
        res = gb.drafting_gain(lm, enc, method, temperature, top_k, top_p, seed, max_new_tokens, samples)
        table = Table(title=f"{method}: {res['nodes']} nodes that drew children, {res['prompts']} prompts x "
                            f"{samples} samples, T={temperature:g}, top-p {top_p:g}: P(a child is accepted | the "
                            f"node is reached)")
        for col in ("nodes", "count", "drawn (rejection sampling)", "top-k of q (sample-and-match)", "ratio",
                    "difference SE", "best of both (ratio)", "1 - TV(p, q)", "p(top-1 of q)", "max p"):
            table.add_column(col)
        for name, r in [*res["by_depth"].items(), *res.get("by_sample", {}).items()]:
            table.add_row(name, str(r["nodes"]), f"{r['drawn']:.4f}", f"{r['topk']:.4f}", f"{r['ratio']:.3f}",
                          f"{r['difference_se']:.4f}", f"{r['best_of_both']:.4f} ({r['best_of_both_ratio']:.3f})",
                          *(f"{r[k]:.3f}" for k in ("overlap", "q_top1", "p_max")))
        _show(table, res, json_out)
