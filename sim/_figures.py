"""The simulator's figures (matplotlib, Agg backend)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from goose import theory  # noqa: E402

from ._grid import run_grid  # noqa: E402
from ._models import ChainModel, RecycledModel, SimulationModel  # noqa: E402

__all__ = ["balanced_parents", "draw_tree", "plot_mat_vs_budget", "spine_vs_balanced", "write_all"]

GAP_BETAS = (0.1, 0.05, 0.025)
COLORS = {"chain": "#888888", "balanced": "#1f77b4", "balanced-k5": "#17becf", "spine": "#d62728",
          "best-first": "#2ca02c", "paper": "#9467bd"}


def plot_mat_vs_budget(rows: Sequence[dict], path: Path, title: str = "") -> Path:
    """MAT (with 95% CI) against budget, one line per shaper."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for name in dict.fromkeys(r["shaper"] for r in rows):
        pts = sorted((r["budget"], r["mat"], r["ci95"]) for r in rows if r["shaper"] == name)
        xs = [p[0] for p in pts]
        ax.errorbar(xs, [p[1] for p in pts], yerr=[[p[1] - p[2][0] for p in pts], [p[2][1] - p[1] for p in pts]],
                    marker="o", capsize=3, label=name, color=COLORS.get(name))
    ax.set_xscale("log", base=2)
    ax.set_xlabel("budget (draft nodes per step)")
    ax.set_ylabel("MAT (tokens per step)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def draw_tree(ax: plt.Axes, parents: Sequence[int], spine: Sequence[bool], title: str) -> None:
    """Draw a tree left to right: depth on x, leaves spread on y; spine in red."""
    n = len(parents)
    kids: list[list[int]] = [[] for _ in range(n)]
    for v in range(1, n):
        kids[parents[v]].append(v)
    y: dict[int, float] = {}
    depth = [0] * n
    counter = [0]

    def place(v: int) -> float:
        if not kids[v]:
            y[v] = counter[0]
            counter[0] += 1
        else:
            ys = [place(c) for c in kids[v]]
            y[v] = sum(ys) / len(ys)
        return y[v]

    for v in range(1, n):
        depth[v] = depth[parents[v]] + 1
    place(0)
    for v in range(1, n):
        p = parents[v]
        ax.plot([depth[p], depth[v]], [y[p], y[v]], color="#d62728" if spine[v] else "#1f77b4", lw=1.5)
    ax.scatter(depth, [y[v] for v in range(n)], s=18, zorder=3,
               c=["black"] + ["#d62728" if spine[v] else "#1f77b4" for v in range(1, n)])
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("depth")
    ax.set_yticks([])


def write_all(out: Path, steps: int = 4000, seed: int = 0) -> list[Path]:
    """Write the four simulator figures into ``out``; returns their paths."""
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    # 1. MAT vs budget at a 6x gap (alpha = 0.6, beta_1 = 0.1)
    model = SimulationModel(ChainModel(0.6), RecycledModel(GAP_BETAS))
    budgets = [1, 2, 4, 8, 16, 32, 64]
    res = run_grid(model, ["chain", "balanced", "balanced-k5", "spine", "best-first"], budgets, steps, seed,
                   show_progress=False)
    paths.append(plot_mat_vs_budget([r.to_json() for r in res], out / "sim_mat_vs_budget.png",
                                    "6x acceptance gap: alpha=0.6, betas=0.1/0.05/0.025"))
    # 2. gain over balanced vs the gap ratio alpha / beta_1 (exact, goose.theory)
    fig, ax = plt.subplots(figsize=(6, 4))
    base = (0.05, 0.025, 0.0125)
    ratios = list(range(1, 19))
    for budget, style in ((16, "-"), (32, "--"), (64, ":")):
        bal = theory.balanced_value(base, budget, 3)
        gains = [(1 + theory.optimal_shape(r * base[0], base, budget).value) / (1 + bal) for r in ratios]
        ax.plot(ratios, gains, style, marker="o", ms=3, color="#2ca02c", label=f"best-first / balanced, B={budget}")
    ax.axhline(1.12, color="grey", lw=0.8)
    ax.text(1, 1.13, "+12%", color="grey", fontsize=8)
    ax.set_xlabel("acceptance gap alpha / beta_1")
    ax.set_ylabel("MAT gain over balanced k=3")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    paths.append(out / "sim_gain_vs_gap.png")
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)
    # 3. the optimal tree with and without a gap
    fig, axes = plt.subplots(1, 2, figsize=(9, 4))
    for ax, alpha, label in ((axes[0], 0.6, "gap 6x: alpha=0.6"), (axes[1], 0.1, "no gap: alpha=beta_1=0.1")):
        shape = theory.optimal_shape(alpha, GAP_BETAS, 24)
        spine = [k == "s" for k in shape.kinds]
        draw_tree(ax, shape.parents, spine, f"optimal tree, B=24, {label}\nE[A]={shape.value:.2f}, "
                                            f"spine {shape.spine_length}")
    fig.tight_layout()
    paths.append(out / "sim_optimal_trees.png")
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)
    paths.append(spine_vs_balanced(out / "sim_spine_vs_balanced.png"))
    return paths


def balanced_parents(budget: int, k: int) -> list[int]:
    """Parents of the isotropic control's tree: breadth-first, ``k`` children a node."""
    parents = [-1]
    node = 0
    while len(parents) <= budget:
        parents += [node] * min(k, budget + 1 - len(parents))
        node += 1
    return parents


def spine_vs_balanced(path: Path, alpha: float = 0.6, betas: Sequence[float] = GAP_BETAS, budget: int = 24) -> Path:
    """The home page's picture: the anisotropic optimum next to a balanced k=3 tree of
    the same budget, with their expected accepted lengths (exact, goose.theory)."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 4), sharey=False)
    shape = theory.optimal_shape(alpha, betas, budget)
    draw_tree(axes[0], shape.parents, [k == "s" for k in shape.kinds],
              f"goose spine (optimal), B={budget}\nE[A]={shape.value:.2f}: context spine + recycled branches")
    bal = theory.balanced_value(betas, budget, 3)
    parents = balanced_parents(budget, 3)
    draw_tree(axes[1], parents, [False] * len(parents),
              f"balanced k=3, B={budget}\nE[A]={bal:.2f}: recycled candidates only")
    fig.suptitle(f"same budget, context acceptance alpha={alpha} vs recycled betas={'/'.join(map(str, betas))}",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
