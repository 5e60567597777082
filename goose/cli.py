"""The ``goose`` command line: ``simulate``, ``figures``, ``generate``."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(help="goose: lossless speculative decoding with anisotropic draft trees.",
                  no_args_is_help=True, add_completion=False)
console = Console(width=None if Console().is_terminal else 160)


def _floats(text: str, what: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise typer.BadParameter(f"{what} must be comma-separated numbers, got {text!r}") from None


def _ints(text: str, what: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise typer.BadParameter(f"{what} must be comma-separated integers, got {text!r}") from None


@app.command()
def simulate(
    alpha: float = typer.Option(0.6, help="Acceptance of a context (spine) token given its parent's."),
    betas: str = typer.Option("0.12,0.06,0.03", help="Recycled acceptances by rank, comma-separated."),
    match_prob: float = typer.Option(1.0, "--match-prob", help="Probability that a context match exists."),
    decay: float = typer.Option(1.0, help="Spine acceptance decay per depth: alpha_d = alpha * decay^(d-1)."),
    overlap: float = typer.Option(0.0, help="Probability the rank-0 recycled token equals the spine token."),
    budget: str = typer.Option("16,32,64", help="Draft-node budgets, comma-separated."),
    shapers: str = typer.Option("chain,balanced,spine,best-first",
                                help="chain, balanced, balanced-k5, spine, best-first, paper, or a dotted path."),
    steps: int = typer.Option(20000, help="Simulated steps per configuration."),
    seed: int = typer.Option(0, help="Seed of all randomness."),
    cost_curve: Path | None = typer.Option(None, "--cost-curve", help="JSON {tokens, seconds} (goose calibrate)."),
    json_out: Path | None = typer.Option(None, "--json", help="Write results as JSON here."),
    plot: Path | None = typer.Option(None, help="Write a MAT-vs-budget PNG here."),
    quiet: bool = typer.Option(False, help="No progress bar."),
) -> None:
    """Predict tokens per step (MAT) of tree shapes from source acceptance rates."""
    from goose import theory
    from sim import ChainModel, RecycledModel, SimulationModel, run_grid

    beta_list = _floats(betas, "--betas")
    budgets = _ints(budget, "--budget")
    names = [s.strip() for s in shapers.split(",") if s.strip()]
    try:
        model = SimulationModel(
            ChainModel(alpha, decay=decay, match_prob=match_prob) if alpha > 0 else None,
            RecycledModel(tuple(beta_list), overlap=overlap) if beta_list else None,
        )
        cost = theory.CostCurve.load(cost_curve) if cost_curve else None
        results = run_grid(model, names, budgets, steps, seed, cost, show_progress=not quiet)
    except ValueError as err:
        raise typer.BadParameter(str(err)) from None
    table = Table(title=f"alpha={alpha} betas={beta_list} match_prob={match_prob} steps={steps} seed={seed}")
    for col in ("shaper", "budget", "MAT", "95% CI", "theory", "accept/node", "accept/opportunity"):
        table.add_column(col)
    if cost:
        table.add_column("speed-up")
    rows = []
    for r in results:
        closed = _closed_form(r.shaper, alpha, beta_list, r.budget, match_prob, decay, overlap)
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
        from sim._figures import plot_mat_vs_budget

        plot_mat_vs_budget(rows, plot, title=f"alpha={alpha}, betas={beta_list}")
        console.print(f"wrote {plot}")


def _closed_form(shaper: str, alpha: float, betas: list[float], budget: int,
                 match_prob: float, decay: float, overlap: float) -> float | None:
    """goose.theory's value where it applies (no overlap); ``None`` elsewhere."""
    from goose import theory

    if overlap > 0:
        return None
    if shaper == "best-first":
        with_match = theory.optimal_shape(alpha, betas, budget, decay).value
        without = theory.optimal_shape(0.0, betas, budget).value
    elif shaper in ("balanced", "balanced-k5"):
        k = 5 if shaper == "balanced-k5" else 3
        with_match = without = theory.balanced_value(betas, budget, k)
    elif shaper == "spine":  # best-first over spine + branches; balanced k=3 with no match
        with_match = theory.optimal_shape(alpha, betas, budget, decay).value
        without = theory.balanced_value(betas, budget, 3)
    elif shaper == "chain":
        with_match, without = theory.chain_value(alpha, budget, decay), 0.0
    else:
        return None
    return 1.0 + match_prob * with_match + (1 - match_prob) * without


@app.command()
def figures(
    out: Path = typer.Option(Path("docs/figures"), help="Folder for the PNGs."),
    steps: int = typer.Option(4000, help="Simulated steps per point."),
    seed: int = typer.Option(0),
) -> None:
    """Write the simulator's figures (MAT vs budget, gain vs gap, optimal trees)."""
    from sim._figures import write_all

    for path in write_all(out, steps=steps, seed=seed):
        console.print(f"wrote {path}")


@app.command()
def generate(
    prompt: str = typer.Argument(..., help="The prompt."),
) -> None:
    """Generate text with speculative decoding (the engine is not built yet)."""
    console.print("[yellow]goose generate: the Hugging Face engine is not built yet.[/yellow]")
    raise typer.Exit(code=2)


if __name__ == "__main__":
    app()
