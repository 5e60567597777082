"""A run next to a reference run on the same prompts (the released GOOSE's, by default):
fidelity of the preset that reproduces it, and the speed targets set against it.
The reference's numbers and targets are data (``goose/bench/reference/*.json``)."""

from __future__ import annotations

from ._columns import goose_columns
from ._prompts import REFERENCES, load_reference

__all__ = ["matching_reference", "release"]


def matching_reference(summary: dict) -> dict | None:
    """The shipped reference run whose prompts are exactly this run's, if any."""
    ids = summary.get("question_ids", {})
    for path in sorted(REFERENCES.glob("*.json")):
        ref = load_reference(path)
        if {t: sorted(q) for t, q in ref["ids"].items()} == ids:
            return ref
    return None


def _fidelity(summary: dict, ref: dict) -> list[str]:
    methods, tasks = summary["methods"], list(summary["tasks"])
    preset, tol = ref["preset"], ref["fidelity_tolerance"]
    fid = [b for b in ref["mat"] if f"{preset}@{b}" in methods]
    if not fid:
        return []
    lines = [f"Fidelity: the `{preset}` preset's MAT over the reference's at the same node budget "
             f"(ok within {tol:.0%}).", "",
             "| task | " + " | ".join(f"{preset}@{b} / reference b{b}" for b in fid) + " |", "|---" * (len(fid) + 1) + "|"]
    for t in tasks + ["overall"]:
        cells = []
        for b in fid:
            mat = (summary["overall"] if t == "overall" else summary["tasks"][t])[f"{preset}@{b}"]["mat"]
            ratio = mat / ref["mat"][b][t]
            cells.append(f"{mat:.2f} / {ref['mat'][b][t]:.2f} = {ratio:.3f} {'ok' if abs(ratio - 1) <= tol else 'OFF'}")
        lines.append(f"| {t} | " + " | ".join(cells) + " |")
    return lines + [""]


def release(summary: dict, reference: dict | None = None) -> list[str]:
    """Markdown: fidelity to the reference run and the speed targets, for a run on
    exactly its prompts (``reference``: its data, default the matching shipped one);
    nothing otherwise."""
    ref = reference or matching_reference(summary)
    if ref is None:
        return []
    methods, tasks, tags = summary["methods"], list(summary["tasks"]), summary.get("tags", {})
    lines = ["", f"## Against the reference run `{ref['name']}` (on these prompts)", "", *_fidelity(summary, ref)]
    ov = summary["overall"]
    goose_methods = [m for m in goose_columns(summary)
                     if ov[m].get("lossless", True)]  # a LOSSY column never counts towards the targets
    combined = [m for m in goose_methods if "both-sources" in tags.get(m, ())]
    hf = [m for m in methods if m.startswith("hf_pld") and ov[m].get("speedup_vs_ar")]
    if not goose_methods:
        return lines
    fastest = max(goose_methods, key=lambda m: ov[m]["speedup_vs_ar"])
    cands = [fastest]
    text = f"Speed: goose's fastest lossless method here is `{fastest}`, {ov[fastest]['speedup_vs_ar']:.2f}x `ar` overall"
    if combined:
        best = max(combined, key=lambda m: ov[m]["speedup_vs_ar"])
        if best != fastest:
            cands.append(best)
            text += f"; its fastest drawing on both sources is `{best}`, {ov[best]['speedup_vs_ar']:.2f}x"
    lines += [text + ".", "", "| target | " + " | ".join(f"`{m}`" for m in cands) + " |",
              "|---" * (len(cands) + 1) + "|"]

    def verdict(value: float, ok: bool) -> str:
        return f"{value:.2f}x {'yes' if ok else 'no'}"

    target, base = ref["targets"], ref["best_cpu_speedup"]
    lines.append(f"| >= {target['over_release_best_cpu']:.2f}x the reference's best CPU configuration "
                 f"({base:.2f}x `ar`) | " + " | ".join(
                     verdict(ov[m]["speedup_vs_ar"] / base, ov[m]["speedup_vs_ar"] >= target["over_release_best_cpu"] * base)
                     for m in cands) + " |")
    if hf:
        top = max(hf, key=lambda m: ov[m]["speedup_vs_ar"])
        r = ov[top]["speedup_vs_ar"]
        lines.append(f"| >= {target['over_best_hf_pld']:.2f}x transformers' prompt lookup (best K: `{top}`, {r:.2f}x) | "
                     + " | ".join(verdict(ov[m]["speedup_vs_ar"] / r, ov[m]["speedup_vs_ar"] >= target["over_best_hf_pld"] * r)
                                  for m in cands) + " |")
    cells = []
    for m in cands:
        slowest = min(tasks, key=lambda t: summary["tasks"][t][m]["speedup_vs_ar"])
        low = summary["tasks"][slowest][m]["speedup_vs_ar"]
        cells.append(f"{verdict(low, low >= target['every_task_vs_ar'])} (slowest: {slowest})")
    lines.append(f"| >= {target['every_task_vs_ar']:.2f}x `ar` on every task | " + " | ".join(cells) + " |")
    return lines
