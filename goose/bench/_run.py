"""``goose bench``: every method on every prompt, interleaved, in one process."""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from ..methods import BUILTIN_METHODS, Memory, Method, parse_method
from ..verify import Sampling
from ._columns import THIRD_PARTY
from ._cost import priced
from ._prompts import BenchPrompt

__all__ = ["BenchMethod", "Sampling", "hf_generate", "parse_methods", "run_bench"]

HF_PLD_KS = (4, 10)


@dataclass(frozen=True)
class BenchMethod:
    """One column of a benchmark.

    ``kind`` is ``"hf"`` (transformers' own ``generate``: plain when ``k == 0``, prompt
    lookup with ``k`` tokens otherwise) or ``"goose"`` (``method`` at ``budget``: an
    int, ``"auto"`` or None for the method's default), verified under sampling by
    ``verifier`` (a name of ``goose.verify.VERIFIERS``, or of a **lossy** greedy one,
    ``loose[-wW][-eH]``; None: the method's own choice).
    """

    label: str
    kind: str
    name: str
    budget: int | str | None = None
    k: int = 0
    method: Method | None = None
    verifier: str | None = None

    @property
    def spec(self) -> str:
        """What the column runs, whatever its label: ``best-first@auto``, ``goose@8/loose``;
        transformers' columns are their names. Two columns of one spec measure the run's noise."""
        if self.kind != "goose":
            return self.label
        at = "" if self.budget is None else f"@{self.budget}"
        return f"{self.name}{at}" + (f"/{self.verifier}" if self.verifier else "")

    @property
    def tags(self) -> tuple[str, ...]:
        """The method's tags, plus ``"third-party"`` for a method goose does not ship (a
        plug-in by dotted path or registered by its user): the report never counts such
        a column as goose's own."""
        if self.method is None:
            return ()
        own = any(self.method is b for b in BUILTIN_METHODS)
        return self.method.tags if own else (*self.method.tags, THIRD_PARTY)


def parse_methods(text: str | Sequence[str], budgets: Sequence[int | str] = ()) -> list[BenchMethod]:
    """``ar`` (or ``hf_ar``: transformers' ``model.generate``, the baseline every
    speed-up is measured against), ``hf_pld`` (K = 4 and 10) or ``hf_pld_kK``, and goose's methods by
    registered name or dotted path (``package.module:factory``). ``name@B`` fixes a
    budget (an integer or ``auto``); a method whose rules say ``budgeted`` runs,
    without ``@B``, once per entry of ``budgets`` (or at its default budget). A
    trailing ``/V`` forces the verifier ``V``: a sampling one (``stand/rrs``) or the lossy
    greedy ``loose[-wW][-eH]`` (``goose@8/loose``, a column labelled lossy). ``label=spec``
    names a goose column (``sfx=suffix_methods:suffix``): without it a dotted path
    labels its column in full. A labelled column is always a goose method, so
    ``goose_ar=ar`` runs goose's own plain-decoding method next to the ``ar`` baseline."""
    from ..verify import check_verifier_name

    names = [x.strip() for x in (text.split(",") if isinstance(text, str) else text) if x.strip()]
    if not names:
        raise ValueError("no methods given")
    out: list[BenchMethod] = []
    for given in names:
        label, eq, full = given.partition("=") if "=" in given else ("", "", given)
        if eq and (not label.strip() or any(c in label for c in "@,/:=")):
            raise ValueError(f"column label {label!r} in {given!r} must be a plain name (no '@', ',', '/', ':' or '=')")
        label, full = label.strip(), full.strip()
        name, slash, verifier = full.rpartition("/") if "/" in full else (full, "", "")
        if slash:
            check_verifier_name(verifier or "?")
        suffix = f"/{verifier}" if slash else ""
        base, at, b = name.rpartition("@") if "@" in name else (name, "", "")
        if base == "hf_ar":
            base = "ar"  # transformers' model.generate, under its explicit name
        elif base == "ar" and label:
            base = name = "goose-ar"  # a labelled column is always a goose method: goose's own plain decoding
        if slash and (base == "ar" or base.startswith("hf_pld")):
            raise ValueError(f"{base!r} is transformers' own decoding: it takes no goose verifier ({full!r})")
        if at and (base == "ar" or base.startswith("hf_pld")):
            raise ValueError(f"method {base!r} drafts no tree and takes no budget ({name!r})")
        if base == "ar":
            out.append(BenchMethod("ar", "hf", "ar"))
        elif base == "hf_pld":
            out += [BenchMethod(f"hf_pld_k{k}", "hf", "hf_pld", k=k) for k in HF_PLD_KS]
        elif base.startswith("hf_pld_k") and base[8:].isdigit() and int(base[8:]) > 0:
            out.append(BenchMethod(base, "hf", "hf_pld", k=int(base[8:])))
        else:
            method, budget = parse_method("ar" if name == "goose-ar" else name)
            todo = [budget] if at else [method.parse_budget(x) for x in budgets] \
                if method.budgeted and method.takes_budget and budgets \
                else [None]
            stem = label or base
            out += [BenchMethod((stem if bb is None or (label and len(todo) == 1) else f"{stem}@{bb}") + suffix,
                                "goose", base, bb, method=method, verifier=verifier or None) for bb in todo]
            continue
        if label:
            raise ValueError(f"{given!r}: transformers' columns keep their own names")
    labels = [m.label for m in out]
    dup = sorted({x for x in labels if labels.count(x) > 1})
    if dup:
        raise ValueError(f"method(s) given twice: {', '.join(dup)}")
    return out


def hf_generate(model: Any, ids: Sequence[int], max_new_tokens: int, *, prompt_lookup_num_tokens: int = 0,
                temperature: float = 0.0, top_k: int = 0, top_p: float = 1.0,
                seed: int = 0) -> tuple[list[int], float]:
    """transformers' own ``model.generate`` on one prompt, timed: greedy (the output every
    lossless greedy method must equal), with its prompt lookup when
    ``prompt_lookup_num_tokens`` > 0, or its own sampling when ``temperature`` > 0 (seeded
    with ``seed``). Returns the new tokens and the wall time in seconds."""
    x = torch.tensor([list(ids)], device=model.device)
    kw: dict[str, Any] = {"do_sample": False}
    if prompt_lookup_num_tokens:
        kw["prompt_lookup_num_tokens"] = prompt_lookup_num_tokens
    if temperature > 0:
        torch.manual_seed(seed)
        kw.update(do_sample=True, temperature=temperature, top_k=top_k or None, top_p=top_p)
    t0 = time.perf_counter()
    with torch.inference_mode():
        out = model.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=max_new_tokens, **kw)
    return out[0, len(ids):].tolist(), time.perf_counter() - t0


class _ForwardCounter:
    """Counts the target's forward calls: a pre-hook on the decoder stack, which every
    path runs (``generate``, goose's prefill through the decoder, tree passes)."""

    def __init__(self, model: Any) -> None:
        self.calls = 0
        self.handle = model.get_decoder().register_forward_pre_hook(self._hook)

    def _hook(self, *_: Any) -> None:
        self.calls += 1


def auto_curve(model: Any, m: BenchMethod, sampling: Sampling | None, batched: bool = False) -> Any:
    """The cost curve an ``@auto`` column's trees are cut by (``goose.hf.calibrate``, or
    with ``batched`` the batch cut's ``goose.hf.calibrate_batch``; measured once and
    cached), or ``None`` for any other column."""
    if m.kind != "goose" or m.budget != "auto":
        return None
    import goose.hf as gh
    from goose.engine import GenerationRequest
    from goose.verify import GREEDY

    argmax_only, bounded = GenerationRequest(m.method, m.budget, sampling or GREEDY, verifier=m.verifier).cost_kind
    if batched:
        return gh.calibrate_batch(model, argmax_only=argmax_only)
    return gh.calibrate(model, argmax_only=argmax_only, bounded=bounded)


def _run_method(session: Any, m: BenchMethod, ids: list[int], max_new_tokens: int, counter: _ForwardCounter,
                trace: Path | None = None, memory: Memory | None = None, warmup: bool = False,
                sampling: Sampling | None = None, seed: int = 0, curve: Any = None) -> dict:
    counter.calls = 0
    draw = {} if sampling is None else {"temperature": sampling.temperature, "top_k": sampling.top_k,
                                        "top_p": sampling.top_p, "seed": seed}
    if m.kind == "hf":
        tokens, wall = hf_generate(session.model, ids, max_new_tokens, prompt_lookup_num_tokens=m.k, **draw)
        return {"tokens": tokens, "new_tokens": len(tokens), "forward_calls": counter.calls, "wall_s": wall,
                "accept_lengths": None, "accept": {}}
    t0 = time.perf_counter()
    import goose.hf as gh

    # the column's own memory, or (warm-up, trace runs) a fresh one: never another column's
    res = gh.generate(session.model, ids, method=m.method, budget=m.budget, max_new_tokens=max_new_tokens,
                      trace=trace, target=session.target, label=m.label, memory=memory, warmup=warmup,
                      verifier=m.verifier, **draw)
    wall = time.perf_counter() - t0
    s = res.stats
    if counter.calls != s.forward_calls:
        raise RuntimeError(f"{m.label}: the loop counted {s.forward_calls} forward calls, the model saw {counter.calls}")
    accept = {src: {"drafted": s.drafted.get(src, 0), "accepted": s.accepted.get(src, 0),
                    "opportunities": s.opportunities.get(src, 0)} for src in s.drafted}
    split = s.time_split()  # the generation's own clock; the call's setup around it counts as other
    split["other"] += max(0.0, wall - s.time_total)
    split["total"] = wall
    return {"tokens": res.tokens, "new_tokens": s.new_tokens, "forward_calls": s.forward_calls, "wall_s": wall,
            "accept_lengths": s.accept_lengths, "accept": accept, "mean_tree_size": s.to_json()["mean_tree_size"],
            "tags": list(m.tags), "lossless": s.lossless, "time": split, "calibration": s.calibration,
            "passes": [list(p) for p in s.passes] if curve is None else priced(s.passes, curve)}


def run_bench(model: Any, tokenizer: Any, prompts: Sequence[BenchPrompt], methods: Sequence[BenchMethod],
              max_new_tokens: int, out: Path, trace_method: str | Sequence[str] | None = None, warmup: bool = True,
              progress: bool = True, log: Callable[[str], None] = print,
              sampling: Sampling | None = None) -> list[dict]:
    """Run every method on every prompt (order A B C on even prompts, C B A on odd
    ones), append one JSON record per (prompt, method) to ``out/records.jsonl`` and
    return them. A prompt or method that fails is recorded with its ``error`` and the
    run goes on. ``trace_method`` (a label, or several) is run once more, untimed, per
    prompt to record a replay trace under ``out/traces`` (:func:`trace_path`: the first
    label's at ``traces/QID.jsonl``, the others' under ``traces/LABEL/``). With
    ``sampling``, every method samples (prompt ``i`` with seed ``sampling.seed + i``) and
    nothing is compared for identity.

    Each goose column owns a :class:`~goose.methods.Memory` (used only by
    cross-request methods); the warm-up and the trace runs get throw-away ones, so
    nothing but the column's own timed runs writes into it. A cross-request column's
    trace run gets a copy of its memory as it was before the prompt's timed run, so the
    trace records the very generation that was timed."""
    import goose.hf as gh
    from goose.verify import lossy_verifier

    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    if sampling is not None and sampling.greedy:
        raise ValueError("sampling needs temperature > 0 (pass sampling=None for the greedy default)")
    lossy = [m.label for m in methods if m.kind == "goose" and lossy_verifier(m.verifier) is not None]
    if sampling is not None and lossy:
        raise ValueError(f"{', '.join(lossy)}: loose verification is greedy only (it needs temperature 0)")
    out.mkdir(parents=True, exist_ok=True)
    trace_labels = [trace_method] if isinstance(trace_method, str) else list(trace_method or ())
    by_label = {m.label: m for m in methods}
    for label in trace_labels:
        if label not in by_label or by_label[label].kind != "goose":
            raise ValueError(f"trace method {label!r} is not one of the goose methods of this run")
    traced = [by_label[label] for label in dict.fromkeys(trace_labels)]
    counter = _ForwardCounter(model)
    session = gh.Session(model, tokenizer)
    memories = {m.label: Memory() for m in methods}
    limit = int(getattr(model.config, "max_position_embeddings", 1 << 30))
    records: list[dict] = []
    try:
        # each @auto column's curve, measured (or read from its cache) once, outside every timing
        curves = {m.label: auto_curve(model, m, sampling) for m in methods}
        if warmup:  # first calls pay for lazy initialisation; keep that out of every timing
            for m in methods:
                _run_method(session, m, [1, 2, 3, 1, 2, 3, 1, 2], 8, counter, warmup=True, sampling=sampling)
        with (out / "records.jsonl").open("w") as f, torch.inference_mode():
            bar = tqdm(total=len(prompts) * len(methods), disable=not progress, unit="run")
            for i, p in enumerate(prompts):
                base = {"question_id": p.qid, "task": p.task, "origin": p.origin}
                try:
                    if not p.text:
                        raise ValueError("the prompt is empty")
                    ids = gh.encode_prompt(tokenizer, p.text, p.chat)
                    if len(ids) + max_new_tokens > limit:
                        raise ValueError(f"prompt ({len(ids)} tokens) + {max_new_tokens} new tokens exceeds the "
                                         f"model's context window ({limit})")
                except Exception as err:  # noqa: BLE001 -- reported in the record, the run goes on
                    log(f"prompt {p.qid} ({p.origin}) skipped: {err}")
                    for m in methods:
                        rec = base | {"method": m.label, "error": str(err)}
                        records.append(rec)
                        f.write(json.dumps(rec) + "\n")
                    bar.update(len(methods))
                    continue
                got: dict[str, dict] = {}
                before = {m.label: copy.deepcopy(memories[m.label]) for m in traced
                          if m.method is not None and m.method.cross_request}
                for m in (methods if i % 2 == 0 else list(reversed(methods))):
                    bar.set_postfix_str(f"{p.task} {p.qid} {m.label}")
                    try:
                        got[m.label] = _run_method(session, m, ids, max_new_tokens, counter, memory=memories[m.label],
                                                   sampling=sampling, seed=0 if sampling is None else sampling.seed + i,
                                                   curve=curves[m.label])
                    except Exception as err:  # noqa: BLE001
                        log(f"{m.label} failed on prompt {p.qid} ({p.origin}): {err}")
                        got[m.label] = {"error": f"{type(err).__name__}: {err}"}
                    bar.update(1)
                for j, m in enumerate(traced):
                    if "error" not in got.get(m.label, {"error": 1}):
                        path = trace_path(out, p.qid, None if j == 0 else m.label)
                        path.parent.mkdir(parents=True, exist_ok=True)
                        _run_method(session, m, ids, max_new_tokens, counter, trace=path, sampling=sampling,
                                    seed=0 if sampling is None else sampling.seed + i,  # the column's own draws
                                    memory=before.get(m.label))
                ref = got.get("ar", {}).get("tokens") if sampling is None else None
                if ref is not None and lossy:
                    _score_lossy(model, ids, ref, [got[m] for m in lossy if "error" not in got[m]])
                for m in methods:
                    r = got[m.label]
                    rec = base | {"method": m.label, "spec": m.spec, "prompt_tokens": len(ids)} | r
                    if "error" not in r:
                        rec["identical_to_ar"] = None if ref is None else r["tokens"] == ref
                        if sampling is not None:
                            rec["sampling"] = sampling.to_json() | {"seed": sampling.seed + i}
                    records.append(rec)
                    f.write(json.dumps(rec) + "\n")
                f.flush()
            bar.close()
    finally:
        counter.handle.remove()
    return records


def target_logprob(model: Any, prompt: Sequence[int], tokens: Sequence[int]) -> float:
    """Mean log-probability per token that ``model`` gives ``tokens`` after ``prompt``
    (one teacher-forced pass): how much a lossy output departs from what the target
    itself would say."""
    if not tokens:
        return 0.0
    ids = torch.tensor([[*prompt, *tokens]])
    with torch.inference_mode():
        logits = model(input_ids=ids).logits[0, len(prompt) - 1: -1].float()
    return float(torch.log_softmax(logits, -1).gather(1, torch.tensor(tokens)[:, None]).mean())


def _score_lossy(model: Any, prompt: list[int], ref: list[int], runs: list[dict]) -> None:
    """Add to each lossy run what it lost against the target's greedy output ``ref``:
    the first position where it differs (``None``: identical) and the mean per-token
    log-probability the target gives it, next to the one it gives ``ref``."""
    ref_lp = target_logprob(model, prompt, ref)
    for r in runs:
        diff = next((i for i, (a, b) in enumerate(zip(r["tokens"], ref, strict=False)) if a != b), None)
        if diff is None and len(r["tokens"]) != len(ref):
            diff = min(len(r["tokens"]), len(ref))
        r |= {"first_divergence": diff, "target_logprob": target_logprob(model, prompt, r["tokens"]),
              "ar_target_logprob": ref_lp}


def trace_path(out: Path, qid: str, method: str | None = None) -> Path:
    """Where ``goose bench --out OUT`` writes the replay trace of prompt ``qid``: the
    first traced method's at ``traces/QID.jsonl``, another traced ``method``'s under
    ``traces/METHOD/``."""
    def safe(name: str, keep: str = "-_") -> str:
        return "".join(c if c.isalnum() or c in keep else "_" for c in str(name))

    folder = Path(out) / "traces"
    return (folder if method is None else folder / safe(method, "-_@")) / f"{safe(qid)}.jsonl"
