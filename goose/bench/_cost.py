"""The cost curve a run's ``auto`` read, checked against the passes the run timed.

``auto`` cuts every tree by a cost curve measured once and cached (``goose calibrate``).
A machine's speed moves (a shared host, another load, a new kernel plan), and a curve
that no longer holds makes ``auto`` price trees wrong. So every timed pass of an
``@auto`` column is set beside what its curve predicted, pooled by the pass's width."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

__all__ = ["COST_BINS", "cost_table", "pool_costs", "priced"]

COST_BINS = ((1, 1), (2, 3), (4, 7), (8, 15), (16, None))
"""Pass widths (tokens per row, root included) the check pools by: ``(least, most)``."""

MIN_PASSES = 20
"""A width bin's ratio is shown only when it holds at least this many passes."""


def priced(passes: Iterable[Sequence[float]], curve: Any, batched: bool = False) -> list[list[float]]:
    """Each timed pass with the curve's prediction appended: ``(nodes, context,
    seconds)`` becomes ``[nodes, context, seconds, c(nodes, context)]``; a batched pass
    ``(rows, width, seconds)`` becomes ``[rows, width, seconds, c(width, context=rows)]``
    (the batched curve keeps one row per row count)."""
    out = []
    for first, second, seconds in passes:
        width, at = (second, first) if batched else (first, second)
        out.append([first, second, float(seconds), float(curve(width, context=at))])
    return out


def _bin(width: int) -> str:
    for lo, hi in COST_BINS:
        if width >= lo and (hi is None or width <= hi):
            return f"{lo}" if lo == hi else f"{lo}+" if hi is None else f"{lo}-{hi}"
    raise ValueError(f"a pass has {width} tokens")


def pool_costs(records: Iterable[dict]) -> dict | None:
    """Measured against predicted seconds of the priced passes (:func:`priced`) of a
    column's records (``passes``: one sequence's; ``batch_passes``: a batch's), over
    all and per width bin (:data:`COST_BINS`): ``passes``, ``measured_s``, ``curve_s``
    and ``bins`` ``{bin: [passes, measured_s, curve_s]}``. ``None`` when no record
    holds priced passes (a column that did not run ``auto``)."""
    total = [0, 0.0, 0.0]
    bins: dict[str, list[float]] = {}
    for r in records:
        pairs = [(p, p[0]) for p in r.get("passes") or ()] + [(p, p[1]) for p in r.get("batch_passes") or ()]
        for p, width in pairs:
            if len(p) < 4:
                continue
            cell = bins.setdefault(_bin(int(width)), [0, 0.0, 0.0])
            for c in (cell, total):
                c[0] += 1
                c[1] += float(p[2])
                c[2] += float(p[3])
    if not total[0]:
        return None
    order = [_bin(lo) for lo, _ in COST_BINS]
    return {"passes": total[0], "measured_s": total[1], "curve_s": total[2],
            "bins": {b: bins[b] for b in order if b in bins}}


def cost_table(columns: dict[str, dict | None], widths: str = "tokens per pass", level: int = 2) -> list[str]:
    """The markdown check of :func:`pool_costs` cells, one row per column (by label),
    under a heading of ``level``; ``widths`` says what a pass's width counts."""
    cells = {m: c for m, c in columns.items() if c}
    if not cells:
        return []
    names = [_bin(lo) for lo, _ in COST_BINS]
    lines = ["", "#" * level + " Cost curve vs measured passes", "",
             ("Every timed target pass of the `@auto` columns against the cost curve their trees were cut by "
              "(`goose calibrate`, cached): measured seconds / curve seconds, over all passes and per pass "
              f"width ({widths}; bins of fewer than {MIN_PASSES} passes are left out). One ratio in every "
              "bin changes nothing `auto` chooses (it compares trees under one curve); ratios that differ "
              "between bins mean the curve's shape no longer holds on this machine, and `goose calibrate` "
              "measures it anew."), "",
             "| method | passes | measured / curve | " + " | ".join(f"width {b}" for b in names) + " |",
             "|---" * (3 + len(names)) + "|"]
    for m, c in cells.items():
        row = []
        for b in names:
            n, measured, curve = c["bins"].get(b, (0, 0.0, 0.0))
            row.append(f"{measured / curve:.2f} ({n})" if n >= MIN_PASSES and curve > 0 else "-")
        lines.append(f"| {m} | {c['passes']} | {c['measured_s'] / c['curve_s']:.2f} | " + " | ".join(row) + " |")
    return lines
