"""``goose bench --batch-size``: goose's batched decoding next to transformers' batched
``generate`` at the same batch size, and best-of-N next to ``num_return_sequences``."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from statistics import median
from typing import Any

import torch
from tqdm.auto import tqdm

from ..verify import Sampling
from ._cost import cost_table, pool_costs, priced
from ._prompts import BenchPrompt
from ._run import BenchMethod, auto_curve

__all__ = ["batch_groups", "batch_markdown", "hf_generate_batch", "near_tie", "run_batch_bench",
           "summarize_batch"]


def batch_groups(prompts: Sequence[BenchPrompt], size: int) -> list[list[int]]:
    """Indices of the prompts of each batch of ``size``: consecutive prompts in their
    order, which lists each task's prompts together (with four prompts per task, as in
    the release-dev set, a batch of 4 is one task and a batch of 8 two); the last batch
    may be smaller."""
    groups: list[list[int]] = []
    current: list[int] = []
    for i, _ in enumerate(prompts):
        current.append(i)
        if len(current) == size:
            groups.append(current)
            current = []
    if current:
        groups.append(current)
    return groups


def hf_generate_batch(model: Any, rows: Sequence[Sequence[int]], max_new_tokens: int, eos: Sequence[int],
                      n: int = 1, sampling: Sampling | None = None) -> tuple[list[list[int]], float]:
    """transformers' batched ``model.generate`` (left padding, an attention mask), timed:
    greedy, or seeded sampling with ``n`` return sequences per row. Each row's tokens end
    at its first EOS, as a single-sequence run would. Returns the tokens per output row
    and the wall time in seconds."""
    width = max(len(r) for r in rows)
    pad = next(iter(eos), 0)
    x = torch.tensor([[pad] * (width - len(r)) + list(r) for r in rows], device=model.device)
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], device=model.device)
    kw: dict[str, Any] = {"do_sample": False}
    if sampling is not None:
        torch.manual_seed(sampling.seed)
        kw.update(do_sample=True, temperature=sampling.temperature, top_k=sampling.top_k or None,
                  top_p=sampling.top_p, num_return_sequences=n)
    t0 = time.perf_counter()
    with torch.inference_mode():
        out = model.generate(x, attention_mask=mask, max_new_tokens=max_new_tokens, pad_token_id=pad, **kw)
    wall = time.perf_counter() - t0
    stop = {int(e) for e in eos}
    tokens = []
    for row in out[:, width:].tolist():
        end = next((i + 1 for i, t in enumerate(row) if t in stop), len(row))
        tokens.append(row[:end])
    return tokens, wall


def near_tie(model: Any, prompt: Sequence[int], ref: Sequence[int], got: Sequence[int]) -> dict:
    """Where ``got`` first leaves ``ref`` (the row decoded alone), and the gap between the
    target's two largest float32 logits there: a near-tie (gap below 1e-4) is broken
    differently by batched arithmetic, as transformers' own batched decoding does."""
    pos = next((i for i, (a, b) in enumerate(zip(ref, got, strict=False)) if a != b), min(len(ref), len(got)))
    x = torch.tensor([list(prompt) + list(ref[:pos])], device=model.device)
    with torch.inference_mode():
        logits = model(x).logits[0, -1].float()
    top = torch.topk(logits, 2).values
    gap = float(top[0] - top[1])
    return {"position": pos, "top2_gap": gap, "near_tie": gap < 1e-4}


def run_batch_bench(model: Any, tokenizer: Any, prompts: Sequence[BenchPrompt], methods: Sequence[BenchMethod],
                    max_new_tokens: int, out: Path, batch_sizes: Sequence[int], samples_per_prompt: int = 1,
                    sampling: Sampling | None = None, progress: bool = True,
                    log: Callable[[str], None] = print, repeats: int = 1) -> list[dict]:
    """Every goose method and ``ar`` (transformers' batched ``generate``) on batches of
    each size, interleaved per batch; one JSON record per (size, batch, method) in
    ``out/records-batch.jsonl``.

    Greedy: each batch holds ``size`` prompts; every row is compared with the prompt
    decoded alone by ``model.generate`` (and a differing row is reported with the
    target's top-2 logit gap where it first differs). Best-of-N
    (``samples_per_prompt`` > 1, needs ``sampling``): each batch is one prompt drawn N
    times; ``ar`` is ``generate(num_return_sequences=N, do_sample=True)``.

    ``repeats`` > 1 runs every column that many times per batch, in alternating order,
    and records the median wall time (``walls_s`` keeps them all): on a shared 2-core
    CPU three runs of one column on one batch spread by 4-37%."""
    import goose.hf as gh

    from ._run import hf_generate

    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    if samples_per_prompt > 1 and sampling is None:
        raise ValueError("best-of-N (--samples-per-prompt > 1) samples: it needs --temperature > 0")
    bad = [m.label for m in methods if m.kind == "hf" and m.k]
    if bad:
        raise ValueError(f"{', '.join(bad)}: transformers' prompt lookup runs at batch size 1 only")
    out.mkdir(parents=True, exist_ok=True)
    eos = gh.eos_ids(model, None)
    limit = int(getattr(model.config, "max_position_embeddings", 1 << 30))
    kept, ids = [], []
    for p in prompts:
        try:
            row = gh.encode_prompt(tokenizer, p.text, p.chat)
            if len(row) + max_new_tokens > limit:
                raise ValueError(f"prompt ({len(row)} tokens) + {max_new_tokens} new tokens exceeds the model's "
                                 f"context window ({limit})")
        except ValueError as err:
            log(f"prompt {p.qid} ({p.origin}) left out: {err}")
            continue
        kept.append(p)
        ids.append(row)
    prompts = kept
    session = gh.Session(model, tokenizer)
    plans = ([(samples_per_prompt, [[i] for i in range(len(prompts))])] if samples_per_prompt > 1
             else [(b, batch_groups(prompts, b)) for b in batch_sizes])
    alone: dict[int, list[int]] = {}
    if sampling is None:  # the reference: each prompt alone through model.generate (untimed here)
        for i in tqdm(range(len(prompts)), disable=not progress, desc="alone"):
            alone[i] = hf_generate(model, ids[i], max_new_tokens)[0]
    # warm-up, with the timed runs' sampling: lazy initialisation and the batched cost
    # curve of the passes they run (measured once, then cached) stay out of every timing
    warm = {} if sampling is None else {"temperature": sampling.temperature, "top_k": sampling.top_k,
                                        "top_p": sampling.top_p}
    for m in methods:
        if m.kind == "goose":
            session.generate_batch([[1, 2, 3, 1, 2, 3], [4, 5, 4, 5]], method=m.method, budget=m.budget,
                                   max_new_tokens=8, tokenizer=None, label=f"{m.label} (warm-up)",
                                   verifier=m.verifier, **warm)
    hf_generate_batch(model, [[1, 2, 3], [4, 5]], 4, eos)
    records: list[dict] = []
    total = sum(len(group) for _, groups in plans for group in groups) * len(methods) * repeats  # rows
    with (out / "records-batch.jsonl").open("w") as f, tqdm(total=total, disable=not progress, unit="run") as bar:
        for size, groups in plans:
            for gi, group in enumerate(groups):
                rows = [ids[i] for i in group]
                n = samples_per_prompt
                base = {"batch_size": size if n == 1 else n, "samples_per_prompt": n, "batch": gi,
                        "tasks": sorted({prompts[i].task for i in group}),
                        "question_ids": [prompts[i].qid for i in group],
                        "prompt_tokens": [len(r) for r in rows]}
                seed = 0 if sampling is None else sampling.seed + 1000 * gi
                draw = None if sampling is None else Sampling(sampling.temperature, sampling.top_k, sampling.top_p, seed)
                got: dict[str, dict] = {}
                walls: dict[str, list[float]] = {m.label: [] for m in methods}
                order = methods if gi % 2 == 0 else list(reversed(methods))
                where = f"batch {gi} (B={base['batch_size']})"
                for rep in range(repeats):  # each round in the other order: no column always runs first
                    for m in (order if rep % 2 == 0 else list(reversed(order))):
                        if "error" in got.get(m.label, {}):  # a column that failed on this batch runs no repeat
                            bar.update(len(group))
                            continue
                        bar.set_postfix_str(f"B={base['batch_size']} {'+'.join(base['tasks'])} {m.label}")
                        rec = _run_one(session, model, m, rows, max_new_tokens, eos, n, draw, where, log) | base
                        bar.update(len(group))
                        first = got.setdefault(m.label, rec)
                        if "error" in rec:  # a repeat that fails fails the column on this batch
                            got[m.label] = rec
                            continue
                        walls[m.label].append(rec["wall_s"])
                        if rec["tokens"] != first["tokens"]:  # seeded and greedy runs repeat exactly
                            log(f"{m.label}: repeat {rep} at {where} gave other tokens")
                            first["repeats_differ"] = True
                for m in methods:
                    rec = got[m.label]
                    if "error" not in rec:
                        rec["walls_s"] = walls[m.label]
                        rec["wall_s"] = median(walls[m.label])  # the median of the repeats
                        rec["new_tokens"] = sum(len(t) for t in rec["tokens"])
                        rec["tokens_per_s"] = rec["new_tokens"] / rec["wall_s"]
                        if sampling is None:
                            same = [t == alone[i] for t, i in zip(rec["tokens"], group, strict=True)]
                            rec["identical_to_alone"] = same
                            rec["differing"] = [{"question_id": prompts[i].qid} | near_tie(model, ids[i], alone[i], t)
                                                for t, i, ok in zip(rec["tokens"], group, same, strict=True) if not ok]
                    records.append(rec)
                    f.write(json.dumps(rec) + "\n")
                    f.flush()
    return records


def _run_one(session: Any, model: Any, m: BenchMethod, rows: list[list[int]], max_new_tokens: int,
             eos: Sequence[int], n: int, draw: Sampling | None, where: str, log: Callable[[str], None]) -> dict:
    """One timed run of column ``m`` on one batch: its tokens, wall time and, for goose,
    the passes and row MATs (or the error, recorded: the bench goes on)."""
    rec: dict[str, Any] = {"method": m.label}
    try:
        if m.kind == "hf":
            tokens, wall = hf_generate_batch(model, rows, max_new_tokens, eos, n=n, sampling=draw)
            return rec | {"tokens": tokens, "wall_s": wall, "row_mat": None, "forward_calls": None}
        kw = {} if draw is None else {"temperature": draw.temperature, "top_k": draw.top_k,
                                      "top_p": draw.top_p, "seed": draw.seed}
        t0 = time.perf_counter()
        res = session.generate_batch(rows, method=m.method, budget=m.budget, n=n, max_new_tokens=max_new_tokens,
                                     label=m.label, verifier=m.verifier, tokenizer=None, **kw)
        wall = time.perf_counter() - t0
        return rec | {"tokens": [r.tokens for r in res], "wall_s": wall, "row_mat": [r.stats.mat for r in res],
                      "mat": res.mat, "forward_calls": res.forward_calls,
                      "lossless": all(r.stats.lossless for r in res)} | _passes(model, m, res, draw)
    except Exception as err:  # noqa: BLE001 -- recorded, the run goes on
        log(f"{m.label} failed at {where}: {err}")
        return rec | {"error": f"{type(err).__name__}: {err}"}


def _passes(model: Any, m: BenchMethod, res: Any, draw: Sampling | None) -> dict:
    """A goose run's timed passes, priced by the cost curve its ``@auto`` cut read: a
    batch's (``batch_passes``) by the batched curve, a batch of one (the single-sequence
    loop, ``passes``) by the single-sequence one."""
    batched = len(res) > 1
    passes = res.passes if batched else res[0].stats.passes
    curve = auto_curve(model, m, draw, batched=batched)
    return {"batch_passes" if batched else "passes":
            [list(p) for p in passes] if curve is None else priced(passes, curve, batched=batched)}


def summarize_batch(records: Sequence[dict]) -> dict:
    """Per batch size and method: throughput (new tokens over the summed wall time),
    speed-up against ``ar`` at the same size (overall, and the median and least per
    batch), per-row MAT, and rows identical to decoding alone."""
    out: dict[str, Any] = {}
    ok = [r for r in records if "error" not in r]
    for size in sorted({r["batch_size"] for r in ok}):
        at = [r for r in ok if r["batch_size"] == size]
        ar = {r["batch"]: r for r in at if r["method"] == "ar"}
        cols: dict[str, dict] = {}
        for label in dict.fromkeys(r["method"] for r in at):
            rs = [r for r in at if r["method"] == label]
            tokens, wall = sum(r["new_tokens"] for r in rs), sum(r["wall_s"] for r in rs)
            c: dict[str, Any] = {"batches": len(rs), "new_tokens": tokens, "wall_s": wall,
                                 "tokens_per_s": tokens / wall if wall else 0.0,
                                 "lossless": all(r.get("lossless", True) for r in rs)}
            mats = [m for r in rs for m in (r.get("row_mat") or [])]
            c["row_mat"] = sum(mats) / len(mats) if mats else None
            c["cost"] = pool_costs(rs)
            if any("identical_to_alone" in r for r in rs):
                same = [s for r in rs for s in r.get("identical_to_alone", [])]
                c["identical"] = f"{sum(same)}/{len(same)}"
                c["differing"] = [d for r in rs for d in r.get("differing", [])]
            pairs = [(r, ar[r["batch"]]) for r in rs if r["batch"] in ar]
            if pairs and label != "ar":
                arw = sum(a["wall_s"] for _, a in pairs)
                art = sum(a["new_tokens"] for _, a in pairs)
                c["speedup_vs_ar"] = (tokens / wall) / (art / arw) if wall and arw else None
                per = {"+".join(r["tasks"]): (r["new_tokens"] / r["wall_s"]) / (a["new_tokens"] / a["wall_s"])
                       for r, a in pairs}
                c["per_batch"] = per
                c["median_batch_speedup"] = median(per.values())
                c["min_batch_speedup"] = min(per.values())
            cols[label] = c
        out[str(size)] = cols
    return out


def batch_markdown(summary: dict, samples_per_prompt: int = 1) -> str:
    """The batch summary as markdown tables (one per batch size; lossy columns labelled)."""
    lines = []
    for size, cols in summary.items():
        what = f"best-of-{size} (one prompt, {size} samples)" if samples_per_prompt > 1 else f"batch size {size}"
        lines += [f"### {what}", "", "| method | tok/s (batch) | speed-up vs ar | median / least per batch | "
                  "row MAT | rows identical to alone |", "|---|---|---|---|---|---|"]
        for label, c in cols.items():
            name = label if c.get("lossless", True) else f"{label} (LOSSY)"
            sp = "-" if c.get("speedup_vs_ar") is None else f"{c['speedup_vs_ar']:.2f}x"
            per = ("-" if c.get("median_batch_speedup") is None
                   else f"{c['median_batch_speedup']:.2f}x / {c['min_batch_speedup']:.2f}x")
            mat = "-" if c.get("row_mat") is None else f"{c['row_mat']:.2f}"
            lines.append(f"| {name} | {c['tokens_per_s']:.1f} | {sp} | {per} | {mat} | {c.get('identical', '-')} |")
        differing = [(label, d) for label, c in cols.items() for d in c.get("differing", [])]
        if differing:
            lines += ["", "Rows that differ from decoding alone (top-2 float32 logit gap where they first differ):", ""]
            lines += [f"- {label}, {d['question_id']}: position {d['position']}, gap {d['top2_gap']:.2e}"
                      f"{' (near-tie)' if d['near_tie'] else ''}" for label, d in differing]
        lines += cost_table({label: c.get("cost") for label, c in cols.items()},
                            "tokens per row, under the batched curve c(rows, width)", level=4)
        per_cols = [(label, c["per_batch"]) for label, c in cols.items() if c.get("per_batch")]
        if per_cols:
            batches = list(per_cols[0][1])
            lines += ["", "| batch (tasks) | " + " | ".join(label for label, _ in per_cols) + " |",
                      "|---|" + "---|" * len(per_cols)]
            lines += [f"| {b} | " + " | ".join(f"{per.get(b, float('nan')):.2f}x" for _, per in per_cols) + " |"
                      for b in batches]
        lines.append("")
    return "\n".join(lines)
