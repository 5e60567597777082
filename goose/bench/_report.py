"""Benchmark summaries: pooled tables per task, predictions, markdown, plots, docs page."""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ._columns import calibration_table, goose_columns, loss_table, pool_steps, step_plots, time_table
from ._columns import f as _f
from ._columns import label as _label
from ._cost import cost_table
from ._noise import chain_table
from ._predictions import prediction_lines
from ._release import release

__all__ = ["checks", "markdown", "plot", "sampling_checks", "summarize", "write_outputs"]

CONTEXT, RECYCLED = "context", "recycled"


def _tags(records: Sequence[dict]) -> dict[str, list[str]]:
    """Each column's method tags (``Method.tags``), as recorded; records written
    before tags were recorded take the registered method's."""
    from ..methods import METHODS

    out: dict[str, list[str]] = {}
    for r in records:
        if r["method"] not in out or (not out[r["method"]] and r.get("tags")):
            base = r["method"].rpartition("@")[0] or r["method"]
            out[r["method"]] = list(r.get("tags") or (METHODS[base].tags if base in METHODS else ()))
    return out


def _specs(records: Sequence[dict]) -> dict[str, str]:
    """Each column's method spec as recorded (``bf2`` -> ``best-first@auto``); a column
    recorded before specs were is its own."""
    return {r["method"]: r.get("spec", r["method"]) for r in records}


def _order(records: Sequence[dict], key: str) -> list[str]:
    seen: dict[str, None] = {}
    for r in records:
        seen.setdefault(r[key], None)
    return list(seen)


def _pool(rows: list[dict], ar_rows: list[dict]) -> dict:
    ok = [r for r in rows if "error" not in r]
    new = sum(r["new_tokens"] for r in ok)
    fwd = sum(r["forward_calls"] for r in ok)
    wall = sum(r["wall_s"] for r in ok)
    cell = {"n": len(ok), "errors": len(rows) - len(ok), "new_tokens": new, "forward_calls": fwd, "wall_s": wall,
            "mat": new / fwd if fwd else 0.0, "tokens_per_s": new / wall if wall else 0.0}
    flags = [r["identical_to_ar"] for r in ok if r.get("identical_to_ar") is not None]
    cell["identical_to_ar"] = all(flags) if flags else None
    cell["identical_count"] = f"{sum(flags)}/{len(flags)}"
    ar_ok = {r["question_id"]: r for r in ar_rows if "error" not in r}
    if ar_ok:
        # speed-up on the same prompts only: pooled tokens/s ratio, and the median per-prompt ratio
        same = [r for r in ok if r["question_id"] in ar_ok]
        a_new = sum(ar_ok[r["question_id"]]["new_tokens"] for r in same)
        a_wall = sum(ar_ok[r["question_id"]]["wall_s"] for r in same)
        m_rate = sum(r["new_tokens"] for r in same) / max(sum(r["wall_s"] for r in same), 1e-12)
        cell["speedup_vs_ar"] = m_rate / (a_new / a_wall) if a_wall and a_new else None
        per = [(r["new_tokens"] / r["wall_s"]) / (ar_ok[r["question_id"]]["new_tokens"] /
                                                    ar_ok[r["question_id"]]["wall_s"]) for r in same]
        cell["median_prompt_speedup"] = statistics.median(per) if per else None
    accept: dict[str, dict] = {}
    for r in ok:
        for src, c in (r.get("accept") or {}).items():
            a = accept.setdefault(src, {"drafted": 0, "accepted": 0, "opportunities": 0})
            for k in a:
                a[k] += c[k]
    for a in accept.values():
        a["per_node"] = a["accepted"] / a["drafted"] if a["drafted"] else 0.0
        a["per_opportunity"] = a["accepted"] / a["opportunities"] if a["opportunities"] else 0.0
    cell["accept"] = accept
    return cell | pool_steps(ok)


def summarize(records: Sequence[dict]) -> dict:
    """``{"tasks": {task: {method: cell}}, "overall": {method: cell}, "gap": ..., "errors": [...]}``;
    a cell pools tokens, forward calls and time over the task's prompts (MAT = new
    tokens / forward calls, prefill included) and gives the speed-up vs ``ar`` on the
    same prompts (pooled and median per prompt)."""
    methods = _order(records, "method")
    tasks = _order(records, "task")
    out: dict = {"methods": methods, "tags": _tags(records), "specs": _specs(records), "tasks": {}, "overall": {}}
    for scope, rows in [(t, [r for r in records if r["task"] == t]) for t in tasks] + [("overall", list(records))]:
        ar_rows = [r for r in rows if r["method"] == "ar"]
        cells = {m: _pool([r for r in rows if r["method"] == m], ar_rows) for m in methods}
        if scope == "overall":
            out["overall"] = cells
        else:
            out["tasks"][scope] = cells
    out["question_ids"] = {t: sorted({str(r["question_id"]) for r in records if r["task"] == t}) for t in tasks}
    out["gap"] = gap(out)
    out["errors"] = [{"question_id": r["question_id"], "method": r["method"], "origin": r.get("origin"),
                      "error": r["error"]} for r in records if "error" in r]
    return out


def gap(summary: dict) -> dict:
    """Acceptance gap per task: context vs recycled acceptance, per drafted node and
    per opportunity, pooled over every method that ran both sources."""
    out = {}
    for task, cells in list(summary["tasks"].items()) + [("overall", summary["overall"])]:
        both = [c["accept"] for c in cells.values() if CONTEXT in c["accept"] and RECYCLED in c["accept"]]
        if not both:
            continue
        row = {}
        for src in (CONTEXT, RECYCLED):
            tot = {k: sum(a[src][k] for a in both) for k in ("drafted", "accepted", "opportunities")}
            row[src] = {"per_node": tot["accepted"] / tot["drafted"] if tot["drafted"] else 0.0,
                        "per_opportunity": tot["accepted"] / tot["opportunities"] if tot["opportunities"] else 0.0}
        for k in ("per_node", "per_opportunity"):
            row[f"ratio_{k}"] = row[CONTEXT][k] / row[RECYCLED][k] if row[RECYCLED][k] else None
        out[task] = row
    return out


def checks(summary: dict, reference: dict | None = None) -> list[str]:
    """Markdown for two claims of the theory, measured: a tree drawing on both sources
    against the better single-source method per task ("either source"), and spine /
    best-first against balanced trees at equal budget, averaged over tasks; then the
    comparison with a reference run (:func:`release`) when the prompts are its own."""
    methods, tasks, tags = summary["methods"], list(summary["tasks"]), summary.get("tags", {})

    def tagged(tag: str, budget: str | None = None) -> list[str]:
        return [m for m in methods if tag in tags.get(m, ()) and (budget is None or m.partition("@")[2] == budget)]

    both = tagged("both-sources")
    lines: list[str] = []

    def either(title: str, note: str, pairs: list[tuple[str, str, str]]) -> None:
        # pairs: (combined method, its pld, its tr)
        if not tasks or not pairs:
            return
        lines.extend(["", title, "", note, "",
                      "| task | " + " | ".join(f"{m} / max({p}, {r})" for m, p, r in pairs) + " |",
                      "|---" * (len(pairs) + 1) + "|"])
        for t in tasks:
            c = summary["tasks"][t]
            cells = []
            for m, p, r in pairs:
                best = max(c[p]["mat"], c[r]["mat"])
                cells.append(f"{c[m]['mat']:.2f} / {best:.2f} = {c[m]['mat'] / best:.2f}x "
                             f"{'ok' if c[m]['mat'] >= best else 'BELOW'}")
            lines.append(f"| {t} | " + " | ".join(cells) + " |")

    same = [(m, tagged("context-only", b)[0], tagged("recycled-only", b)[0]) for m in both
            for b in [m.partition("@")[2]] if b and tagged("context-only", b) and tagged("recycled-only", b)]
    own = [m for m in tagged("context-only") if "@" not in m][:1] + [m for m in tagged("recycled-only") if "@" not in m][:1]
    either("## Either source at equal budget: combined trees vs the better single source",
           "MAT of each method drawing on both sources over the larger MAT of the two single-source "
           "methods (`pld`: a context chain, `tr`: Token Recycling's tree) run at the same budget "
           "(`auto`: each method cuts its own trees by the same cost curve). This is the setting of "
           "the theory's union-dominance bound (docs/theory.md, section 4).", same)
    if len(own) == 2:
        either("## Either source: combined trees vs single sources at their own sizes",
               f"The same ratio against `{own[0]}` and `{own[1]}` at their own sizes (for the built-ins: a "
               "chain of up to 10 tokens, Token Recycling's 80-node tree): not an equal-budget comparison, "
               "so the bound need not hold where the combined method drafts fewer nodes.",
               [(m, own[0], own[1]) for m in both])
    rows = []
    for m in tagged("anisotropic"):
        b = m.partition("@")[2]
        for iso in tagged("isotropic", b) if b.isdigit() else []:
            ratios = [summary["tasks"][t][m]["mat"] / summary["tasks"][t][iso]["mat"] for t in tasks]
            rows.append(f"| {b} | {m} / {iso} | {sum(ratios) / len(ratios):.2f}x | {min(ratios):.2f}x |")
    if rows:
        lines += ["", "## Anisotropy: spine and best-first vs balanced trees at equal budget", "",
                  "| budget | MAT ratio | mean over tasks | lowest task |", "|---|---|---|---|", *rows]
    return lines + release(summary, reference)


def sampling_checks(summary: dict) -> list[str]:
    """Markdown for the sampling claims, measured: stochastic drafts (verified with
    ``q``) against the same method's deterministic top-k control (``NAME-topk``,
    sample-and-match) at equal budget and sources, and Traversal Verification against
    recursive rejection sampling (``NAME/traversal`` vs ``NAME/rrs``); MAT ratios
    averaged over tasks, and the lowest task."""
    methods, tasks = summary["methods"], list(summary["tasks"])
    if not tasks:
        return []

    def base(m: str) -> tuple[str, str, str]:
        name, _, verifier = m.partition("/")
        method, at, budget = name.partition("@")
        return method, at + budget, verifier

    pairs = []
    for m in methods:
        method, budget, verifier = base(m)
        control = f"{method}-topk{budget}"
        if control in methods:
            pairs.append((m, control))
        if verifier == "traversal" and f"{method}{budget}/rrs" in methods:
            pairs.append((m, f"{method}{budget}/rrs"))
    lines = _sampling_speed(summary)
    if not pairs:
        return lines
    lines += ["", "## Sampling: stochastic drafts vs deterministic ones, Traversal vs rejection sampling", "",
             ("MAT ratio of each pair on the same prompts: a method whose children are drawn from q over its "
              "`-topk` control (the same sources, shaper and budget, top-k children, sample-and-match), and "
              "Traversal Verification over recursive rejection sampling on the same method."), "",
             "| pair | mean over tasks | lowest task |", "|---|---|---|"]
    for a, b in pairs:
        ratios = [summary["tasks"][t][a]["mat"] / summary["tasks"][t][b]["mat"] for t in tasks
                  if summary["tasks"][t][b]["mat"]]
        if ratios:
            lines.append(f"| {a} / {b} | {sum(ratios) / len(ratios):.3f}x | {min(ratios):.3f}x |")
    return lines


def _sampling_speed(summary: dict) -> list[str]:
    """The fastest goose method of a sampling run against ``ar`` and the best
    ``hf_pld_kK`` of the run, overall and on its slowest task."""
    overall, tasks = summary["overall"], list(summary["tasks"])
    goose = goose_columns(summary)
    if not goose:
        return []
    best = max(goose, key=lambda m: overall[m]["speedup_vs_ar"])
    lines = ["", f"Speed: goose's fastest sampling method here is `{best}`, "
                 f"{overall[best]['speedup_vs_ar']:.2f}x `ar` overall."]
    pld = [m for m in summary["methods"] if m.startswith("hf_pld") and overall.get(m, {}).get("speedup_vs_ar")]
    if pld:
        top = max(pld, key=lambda m: overall[m]["speedup_vs_ar"])
        lines[-1] += (f" Over transformers' prompt lookup (best K here: `{top}`, {overall[top]['speedup_vs_ar']:.2f}x): "
                      f"{overall[best]['speedup_vs_ar'] / overall[top]['speedup_vs_ar']:.2f}x.")
    per_task = [(summary["tasks"][t][best].get("speedup_vs_ar"), t) for t in tasks
                if summary["tasks"][t].get(best, {}).get("speedup_vs_ar")]
    if per_task:
        low, task = min(per_task)
        lines[-1] += f" Its slowest task: {task}, {low:.2f}x."
    return lines


def markdown(summary: dict, meta: dict | None = None, predictions: dict | None = None,
             plots: Sequence[str] = ()) -> str:
    """The benchmark as markdown tables (MAT, speed-up, identity, acceptance gap,
    predictions), with the exact protocol when ``meta`` is given."""
    methods = summary["methods"]
    scopes = list(summary["tasks"]) + ["overall"]

    def cell(scope: str, m: str) -> dict:
        return summary["overall"][m] if scope == "overall" else summary["tasks"][scope][m]

    lines: list[str] = []
    draw = (meta or {}).get("sampling")
    regime = ("greedy" if not draw else f"sampling at temperature {draw['temperature']:g}"
              + (f", top-p {draw['top_p']:g}" if draw["top_p"] < 1 else "")
              + (f", top-k {draw['top_k']}" if draw["top_k"] else "") + f" (prompt i seeded {draw['seed']} + i)")
    if meta:
        lines += ["## Protocol", "", f"- command: `{meta.get('command', '')}`",
                  (f"- model: {meta.get('model')}, {meta.get('dtype', 'float32')}, {regime}, "
                  f"{meta.get('max_new_tokens')} new tokens, batch 1, {meta.get('threads')} threads, "
                   f"{'goose linear layers (`goose.kernels.pack_linears`)' if meta.get('packed_linears') else 'stock layers'} "
                   "(the same model object for every method)"),
                  f"- machine: {meta.get('machine')}; torch {meta.get('torch')}, transformers {meta.get('transformers')}",
                  *([f"- linear kernels by row count (tuned on the machine): {meta['linear_kernels']}"]
                    if meta.get("linear_kernels") else []),
                  *([f"- goose's {'sampling' if meta.get('sampling') else 'greedy'} verification head: "
                     f"{meta['verify_head']}"] if meta.get("verify_head") else []),
                  *([f"- memory: kernel policy `{meta.get('kernel_memory', 'lean')}`; peak RSS of this run "
                     f"{meta['memory']['goose_bench_peak_mb']:.0f} MiB, of stock transformers' `generate` on the "
                     f"first prompt {meta['memory']['stock_generate_peak_mb']:.0f} MiB (a fresh process)"
                     + (f" ({meta['memory']['note']})" if meta["memory"].get("note") else "")]
                    if meta.get("memory", {}).get("stock_generate_peak_mb") else []),
                  f"- date: {meta.get('date')}; {meta.get('prompts')} prompts",
                  ("- every method runs on every prompt in one process, after a warm-up, in alternating order "
                  "(A B C on even prompts, C B A on odd ones); `ar` is `model.generate(do_sample="
                   + ("True)` with the same settings, seeded by `torch.manual_seed`, and every goose method "
                      "verifies with its lossless sampling verifier (`/rrs`, `/traversal` force one)"
                      if draw else "False)`") +
                  ", `hf_pld_kK` is `model.generate(prompt_lookup_num_tokens=K)`."),
                  ("- MAT = new tokens / target forward calls (prefill included; plain decoding = 1.00). "
                  "Speed-up = pooled tokens/s over pooled tokens/s of `ar` on the same prompts; the median "
                  "per-prompt ratio is in the summary JSON."), ""]
    head = "| task | " + " | ".join(_label(summary, m) for m in methods) + " |"
    rule = "|---" * (len(methods) + 1) + "|"
    lines += ["## MAT (tokens per target forward)", "", head, rule]
    lines += [f"| {s} | " + " | ".join(_f(cell(s, m)["mat"]) for m in methods) + " |" for s in scopes]
    lines += ["", "## Speed-up vs `ar` (wall clock, same process)", "", head, rule]
    for s in scopes:
        ar = cell(s, "ar")["tokens_per_s"] if "ar" in methods else None
        row = [(_f(ar, ".1f", " tok/s") if m == "ar" else _f(cell(s, m).get("speedup_vs_ar"), ".2f", "x"))
               for m in methods]
        lines.append(f"| {s} | " + " | ".join(row) + " |")
    if not draw:
        lines += ["", "## Identical to `ar` (prompts)", "", head, rule]
        lines += [f"| {s} | " + " | ".join(cell(s, m)["identical_count"] for m in methods) + " |" for s in scopes]
    # the reference run and the theory's checks are greedy: a sampling run reports its own pairs
    lines += sampling_checks(summary) if draw else checks(summary)
    lines += chain_table(summary)
    lines += time_table(summary) + cost_table({_label(summary, m): c.get("cost") for m, c in summary["overall"].items()})
    lines += calibration_table(summary) + loss_table(summary)
    if summary.get("gap"):
        lines += ["", "## Acceptance gap (context vs recycled source)", "",
                  ("Pooled over every method that ran both sources. Per node = accepted / drafted nodes; "
                  "per opportunity = accepted / (accepted nodes or roots that had a child from the source)."), "",
                  ("| task | context per node | recycled per node | gap | context per opportunity | "
                  "recycled per opportunity | gap |"), "|---|---|---|---|---|---|---|"]
        for s, g in summary["gap"].items():
            lines.append(f"| {s} | {g[CONTEXT]['per_node']:.1%} | {g[RECYCLED]['per_node']:.1%} | "
                         f"{_f(g['ratio_per_node'], '.1f', 'x')} | {g[CONTEXT]['per_opportunity']:.1%} | "
                         f"{g[RECYCLED]['per_opportunity']:.1%} | {_f(g['ratio_per_opportunity'], '.1f', 'x')} |")
    if predictions:
        lines += prediction_lines(predictions)
    if summary.get("errors"):
        lines += ["", "## Failed runs", ""]
        lines += [f"- {e['question_id']} ({e['origin']}), {e['method']}: {e['error']}" for e in summary["errors"]]
    for p in plots:
        lines += ["", f"![{Path(p).stem}]({p})"]
    return "\n".join(lines) + "\n"


def plot(summary: dict, out: Path) -> list[Path]:
    """PNG plots: MAT and speed-up per task per method, MAT vs budget, acceptance gap."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    methods = summary["methods"]
    scopes = list(summary["tasks"]) + ["overall"]
    paths = []

    def cell(scope: str, m: str) -> dict:
        return summary["overall"][m] if scope == "overall" else summary["tasks"][scope][m]

    for key, title, fname in (("mat", "MAT (tokens per target forward)", "bench_mat.png"),
                              ("speedup_vs_ar", "speed-up vs ar (wall clock)", "bench_speedup.png")):
        fig, ax = plt.subplots(figsize=(max(8, 1.3 * len(scopes)), 4.8))
        w = 0.8 / len(methods)
        colors = plt.get_cmap("tab20")(np.arange(len(methods)) % 20)  # distinct up to 20 methods
        for j, m in enumerate(methods):
            vals = [cell(s, m).get(key) or 0.0 for s in scopes]
            ax.bar(np.arange(len(scopes)) + j * w - 0.4 + w / 2, vals, w, label=_label(summary, m), color=colors[j])
        ax.axhline(1.0, color="k", lw=0.8)
        ax.set_xticks(np.arange(len(scopes)), scopes, rotation=20)
        ax.set_title(title)
        ax.legend(fontsize=7, ncols=min(len(methods), 6), loc="upper center", bbox_to_anchor=(0.5, -0.2))
        paths.append(_save(fig, out / fname))
    curves: dict[str, list[tuple[int, float]]] = {}
    for m in methods:
        name, _, b = m.partition("@")
        if b.isdigit():
            curves.setdefault(name, []).append((int(b), summary["overall"][m]["mat"]))
    if any(len(v) > 1 for v in curves.values()):
        fig, ax = plt.subplots(figsize=(6, 4))
        for name, pts in curves.items():
            pts.sort()
            ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", label=name)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("budget (draft nodes per step)")
        ax.set_ylabel("MAT, all prompts")
        ax.legend()
        paths.append(_save(fig, out / "bench_mat_vs_budget.png"))
    paths += step_plots(summary, out, plt, _save)
    if summary.get("gap"):
        g = summary["gap"]
        fig, ax = plt.subplots(figsize=(max(7, 1.2 * len(g)), 4))
        x = np.arange(len(g))
        ax.bar(x - 0.2, [v[CONTEXT]["per_node"] for v in g.values()], 0.4, label="context (per node)")
        ax.bar(x + 0.2, [v[RECYCLED]["per_node"] for v in g.values()], 0.4, label="recycled (per node)")
        ax.set_xticks(x, list(g), rotation=20)
        ax.set_ylabel("accepted / drafted")
        ax.set_title("acceptance gap per task")
        ax.legend()
        paths.append(_save(fig, out / "bench_gap.png"))
    return paths


def _save(fig: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_outputs(out: Path, records: Sequence[dict], meta: dict, predictions: dict | None = None) -> dict:
    """summary.json, results.md and the PNG plots of a run directory; ``predictions``
    (from ``sim.predict_bench``) go in as they are."""
    summary = summarize(records)
    summary["meta"] = meta
    summary["predictions"] = predictions or {}
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    pngs = plot(summary, out)
    (out / "results.md").write_text(markdown(summary, meta, summary["predictions"], [p.name for p in pngs]))
    return summary
