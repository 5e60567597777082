"""``goose predict``: fit source models to traces and rank every method by its predicted
MAT and speed-up (``sim.predict_methods``). Registered on the main app by ``goose.cli``."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from goose._cli_errors import UserError, check_output_file
from goose.methods import METHODS

__all__ = ["register_predict_command"]


def register_predict_command(app: typer.Typer, console: Console) -> None:
    """Add ``goose predict`` to ``app``."""

    @app.command()
    def predict(
        traces: list[Path] = typer.Argument(..., help="Traces written by goose generate --trace or goose bench --trace."),
        methods: str = typer.Option("", help="Method labels (name, name@B, name@auto), comma-separated; default: every "
                                             "method the simulator models, at its default budget and at auto."),
        cost_curve: Path | None = typer.Option(None, "--cost-curve", help="JSON from goose calibrate --out (any device); "
                                                                          "default: one recorded in the traces, if any."),
        steps: int = typer.Option(4000, help="Simulated steps per method."),
        seed: int = typer.Option(0, help="Seed of all randomness."),
        states: int = typer.Option(1, help="Regime states of the fitted model (1, the default: steps independent)."),
        json_out: Path | None = typer.Option(None, "--json", help="Write the ranked predictions as JSON here."),
        save_model: Path | None = typer.Option(None, "--save-model",
                                               help="Write the source model fitted to the traces as recorded (JSON) here."),
        quiet: bool = typer.Option(False, help="No progress bar."),
    ) -> None:
        """Fit source models to traces and predict MAT and speed-up of every method, ranked."""
        from goose import theory
        from sim import fit_model, load_trace, predict_methods, simulated_methods

        check_output_file(json_out, "--json")
        check_output_file(save_model, "--save-model")
        for t in traces:
            if not t.is_file():
                raise UserError(f"--traces: {t} is not a file (give traces written with --trace)")
        if steps < 1:
            raise UserError(f"--steps: must be >= 1, got {steps}")
        if states < 1:
            raise UserError(f"--states: must be >= 1, got {states}")
        cost = theory.CostCurve.load(cost_curve) if cost_curve else None
        if cost is None:
            recorded = next((h["cost_curve"] for h in (load_trace(t)[0] for t in traces) if h.get("cost_curve")), None)
            cost = theory.CostCurve.from_json(recorded) if recorded else None
        labels = [m.strip() for m in methods.split(",") if m.strip()]
        if not labels:
            names = simulated_methods()
            labels = names + [f"{n}@auto" for n in names if METHODS[n].auto and cost is not None]
        rows = predict_methods(traces, labels, cost, steps, seed, progress=not quiet, states=states)
        whole = any(r.get("speedup_e2e") for r in rows)  # the curve has measured prefills
        table = Table(title=f"predicted from {len(traces)} trace(s), {steps} steps per method"
                            + ("" if cost else " (no cost curve: MAT only)"))
        cols = ("method", "budget", "MAT", "95% CI", "nodes/step") + (("decoding speed-up", "95% CI") if cost else ())
        for col in cols + (("end to end", "95% CI") if whole else ()):
            table.add_column(col)
        for r in rows:
            if "skipped" in r:
                continue
            cells = [r["method"], str(r["budget"]), f"{r['mat']:.3f}", "[{:.3f}, {:.3f}]".format(*r["ci95"]),
                     f"{r['mean_nodes']:.1f}"]
            if cost:
                cells += [f"{r['speedup']:.2f}x", "[{:.2f}, {:.2f}]".format(*r["speedup_ci95"])]
            if whole:
                cells += [f"{r['speedup_e2e']:.2f}x", "[{:.2f}, {:.2f}]".format(*r["speedup_e2e_ci95"])]
            table.add_row(*cells)
        console.print(table)
        if cost:
            console.print("end to end: the traced prompts' prefills priced by the curve's measured prefills, "
                          "as in goose bench" if whole else
                          "speed-ups are the decoding's alone: the curve has no measured prefills "
                          "(goose calibrate measures them) to price the traced prompts by")
        for r in rows:
            if "skipped" in r:
                console.print(f"skipped {r['method']}: {r['skipped']}")
        if json_out:
            json_out.write_text(json.dumps({"traces": [str(t) for t in traces], "steps": steps, "seed": seed,
                                            "states": states, "cost_curve": cost.to_json() if cost else None,
                                            "predictions": rows}, indent=1))
            console.print(f"wrote {json_out}")
        if save_model:
            save_model.write_text(json.dumps(fit_model(traces, states=states).to_json(), indent=1))
            console.print(f"wrote {save_model}")
