"""How much a bench run's speed-ups move on their own, from columns run twice, and the
theory's "never worse than a chain" measured against that noise (goose bench's report)."""

from __future__ import annotations

import itertools

__all__ = ["chain_table", "repeat_noise"]


def _columns_by_spec(summary: dict) -> dict[str, list[str]]:
    """The columns of each method spec (``best-first@auto``), in the run's order; runs
    recorded before specs were count each column as its own spec."""
    specs = summary.get("specs", {})
    out: dict[str, list[str]] = {}
    for m in summary["methods"]:
        out.setdefault(specs.get(m, m), []).append(m)
    return out


def repeat_noise(summary: dict) -> dict[str, float]:
    """Per task (and ``"overall"``), the largest relative difference in tokens per second
    between two columns that ran the same method spec (``bf2=best-first@auto`` next to
    ``best-first@auto``): how far a speed-up moves with nothing changed. Empty without
    a repeated column."""
    groups = [ms for ms in _columns_by_spec(summary).values() if len(ms) > 1]
    out: dict[str, float] = {}
    for scope, cells in [*summary["tasks"].items(), ("overall", summary["overall"])]:
        diffs = [abs(cells[a]["tokens_per_s"] / cells[b]["tokens_per_s"] - 1.0)
                 for ms in groups for a, b in itertools.combinations(ms, 2)
                 if cells.get(a, {}).get("tokens_per_s") and cells.get(b, {}).get("tokens_per_s")]
        if diffs:
            out[scope] = max(diffs)
    return out


def chain_table(summary: dict) -> list[str]:
    """Markdown: each ``@auto`` method drawing on both sources against the ``@auto``
    context chain of the run (``pld@auto``), per task, with the run-to-run noise of
    :func:`repeat_noise`: "yes" where the tree column is at least as fast as the chain
    within that noise (docs/theory.md, section 6b, says what the property promises)."""
    tags, specs = summary.get("tags", {}), _columns_by_spec(summary)
    first = {spec: ms[0] for spec, ms in specs.items()}
    chains = [m for spec, m in first.items() if spec.endswith("@auto") and "context-only" in tags.get(m, ())]
    trees = [m for spec, m in first.items() if spec.endswith("@auto") and "both-sources" in tags.get(m, ())]
    if not chains or not trees:
        return []
    chain, noise = chains[0], repeat_noise(summary)
    repeated = [ms for ms in specs.values() if len(ms) > 1]
    pairs = "; ".join(" and ".join(f"`{m}`" for m in ms) for ms in repeated)
    how = (f"the largest difference in tokens per second between columns that ran the same method ({pairs})"
           if repeated else "not measured, the run has no repeated column (add one, e.g. `bf2=best-first@auto`)")
    lines = ["", "## Never worse than a chain", "",
             (f"Tokens per second of each `@auto` tree drawing on both sources over the context chain "
              f"`{chain}`, per task. Run-to-run noise: {how}. \"yes\": the tree is at least as fast as the "
              "chain within that noise."), "",
             "| task | " + " | ".join(f"{t} / {chain}" for t in trees) + " | noise |",
             "|---" * (len(trees) + 2) + "|"]
    for scope, cells in [*summary["tasks"].items(), ("overall", summary["overall"])]:
        row = []
        for t in trees:
            a, b = cells.get(t, {}).get("tokens_per_s"), cells.get(chain, {}).get("tokens_per_s")
            if not a or not b:
                row.append("-")
                continue
            ratio = a / b
            verdict = "" if scope not in noise else (" yes" if ratio >= 1.0 - noise[scope] else " no")
            row.append(f"{ratio:.3f}x{verdict}")
        spread = f"{noise[scope]:.1%}" if scope in noise else "-"
        lines.append(f"| {scope} | " + " | ".join(row) + f" | {spread} |")
    return lines
