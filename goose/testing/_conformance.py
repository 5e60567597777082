"""Conformance checks: the contract of each plug-in kind, as functions that raise
``AssertionError`` naming the broken rule."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence

import numpy as np
import torch

from ..engine import GenerationPlan, GenerationRequest, decode
from ..methods import Memory, Method
from ..sources import Observation, Proposal, TokenSource
from ..trees import DraftTree, TreeShaper
from ..verify import GreedyVerifier, Verifier, naive_greedy, target_law
from ._fixtures import RandomSource, ToyTarget, random_streams, random_tree
from ._statistics import chi_square_pvalue

__all__ = ["check_method", "check_shaper", "check_source", "check_verifier"]


def check_source(make: Callable[[], TokenSource], vocab: int = 16, trials: int = 30, seed: int = 0) -> None:
    """A source: proposes nothing for an empty context; returns valid ``Proposal`` s of
    tokens in range; is deterministic; survives ``begin``, ``commit`` and ``observe``."""
    rng = np.random.default_rng(seed)
    src = make()
    assert isinstance(src, TokenSource), "make() must return a TokenSource"
    src.begin([])
    assert src.propose([]) == [], "a source must propose nothing for an empty context"
    for stream in random_streams(rng, trials, vocab):
        src.begin(stream[:1])
        src.commit(stream[1:] or stream[:1])
        if len(stream) == 1:
            src.begin(stream)
        n = len(stream)
        obs = Observation(
            np.asarray(stream, dtype=np.int64),
            np.asarray([-1] + stream[:-1], dtype=np.int64),
            rng.integers(0, vocab, (n, 3)),
            np.sort(rng.random((n, 3)), axis=1)[:, ::-1] / 3,
        )
        src.observe(obs)
        path = [int(t) for t in rng.integers(0, vocab, int(rng.integers(0, 3)))]
        first = src.propose(stream, path)
        again = src.propose(stream, path)
        assert first == again, "propose must be deterministic given what the source has seen"
        for p in first:
            assert isinstance(p, Proposal), f"propose returned {type(p).__name__}, not Proposal"
            assert p.source == src.name, f"proposal names source {p.source!r}, the source is {src.name!r}"
            assert all(0 <= t < vocab for t in p.tokens), f"token out of range in {p.tokens}"


def check_shaper(
    make: Callable[[], TreeShaper],
    make_sources: Callable[[int], Sequence[TokenSource]] | None = None,
    budgets: Sequence[int] = (1, 2, 3, 7, 16, 40),
    trials: int = 20,
    seed: int = 0,
) -> None:
    """A shaper: returns a valid tree rooted at ``context[-1]`` within every budget,
    and rejects a budget below 1 with ``ValueError``."""
    if make_sources is None:

        def make_sources(s: int) -> Sequence[TokenSource]:
            return [RandomSource(s, name="context"), RandomSource(s + 1, name="recycled")]

    rng = np.random.default_rng(seed)
    for trial, stream in enumerate(random_streams(rng, trials, 20)):
        sources = make_sources(seed + trial)
        shaper = make()
        for src in sources:
            src.begin(stream)
        for budget in budgets:
            tree = shaper.shape(stream, sources, budget)
            assert isinstance(tree, DraftTree), "shape must return a DraftTree"
            assert tree.size <= budget, f"tree has {tree.size} draft nodes, budget {budget}"
            assert int(tree.tokens[0]) == stream[-1], "the root must be the last committed token"
        for bad in (0, -1):
            try:
                shaper.shape(stream, sources, bad)
            except ValueError:
                pass
            else:
                raise AssertionError(f"budget {bad} must raise ValueError")


def check_verifier(
    make: Callable[[], Verifier],
    mode: str = "greedy",
    trials: int = 25,
    samples: int = 3000,
    seed: int = 0,
    alpha: float = 1e-6,
) -> None:
    """A verifier: rejects logits of the wrong shape; returns a real root path.

    ``mode="greedy"``: must equal the path-by-path greedy reference exactly.
    ``mode="sampling"`` (temperature 1, no truncation): the law of the emitted
    tokens must match the target's, by a chi-square test per tree at level
    ``alpha`` (Bonferroni over ``trials``; false-failure probability <= alpha).
    """
    if mode not in ("greedy", "sampling"):
        raise ValueError(f"mode must be 'greedy' or 'sampling', got {mode!r}")
    rng = np.random.default_rng(seed)
    v = make()
    tree = DraftTree([0, 1], [-1, 0])
    try:
        v.verify(tree, torch.zeros(3, 4))
    except ValueError:
        pass
    else:
        raise AssertionError("logits with a wrong number of rows must raise ValueError")
    vocab = 6
    for _ in range(trials):
        tree = random_tree(rng, 10, vocab)
        logits = torch.from_numpy(rng.normal(size=(tree.num_nodes, vocab)) * 2)
        out = v.verify(tree, logits)
        node = 0
        for a in out.accepted:
            assert int(tree.parents[a]) == node, "accepted nodes must form a path from the root"
            node = a
        assert out.tokens == tuple(int(tree.tokens[a]) for a in out.accepted)
        assert tree.child_with_token(node, out.bonus) is None, "the bonus must leave the tree"
        if mode == "greedy":
            assert out == naive_greedy(tree, logits), "greedy verifier disagrees with the reference"
            assert out == GreedyVerifier().verify(tree, logits)
            continue
        law = target_law(tree, logits.double().softmax(-1).numpy())
        counts = Counter(v.verify(tree, logits).emitted for _ in range(samples))
        assert set(counts) <= set(law), "verifier emitted a sequence the target cannot"
        p = chi_square_pvalue(counts, law)
        assert p > alpha / trials, f"emitted law differs from the target law (p={p:.2e})"


def _logged(obj: object, hook: str, log: list[tuple], entry: Callable[..., tuple]) -> None:
    """Replace ``obj.hook`` by a wrapper that appends ``entry(*args, result)`` to ``log``."""
    inner = getattr(obj, hook)

    def wrapper(*args: object) -> object:
        result = inner(*args)
        log.append(entry(*args, result))
        return result

    setattr(obj, hook, wrapper)


def _spied(plan: GenerationPlan, log: list[tuple]) -> GenerationPlan:
    """A plan's parts with their lifecycle calls logged as ``(who, hook, tokens)`` and the
    shaper's ``shape`` / ``record`` as ``("shaper", "shape", tree size)`` /
    ``("shaper", "record", accepted length)``."""
    parts = [(f"source{i}", s) for i, s in enumerate(plan.sources)] + [("shaper", plan.shaper)]
    for who, obj in parts:
        for hook in ("begin", "commit", "end", "abort"):
            _logged(obj, hook, log, lambda tokens, _, w=who, h=hook: (w, h, list(tokens)))
    _logged(plan.shaper, "shape", log, lambda context, sources, budget, tree: ("shaper", "shape", tree.size))
    _logged(plan.shaper, "record", log, lambda tree, accepted, _: ("shaper", "record", len(accepted)))
    return plan


def _toy_cost(n: float, context: float | None = None) -> float:
    """A cost curve for ``auto`` on the toy target: a pass over ``n`` tokens costs
    ``1 + n / 8`` units, so small trees pay and large ones do not."""
    return 1.0 + float(n) / 8


def _budgets(method: Method) -> list[int | str | None]:
    """What :func:`check_method` runs a method at: its default, ``@3`` and ``auto`` where
    the method takes them."""
    return [None] + ([3] if method.takes_budget else []) + (["auto"] if method.takes_budget and method.auto else [])


def _run_checked(target: ToyTarget, plan: GenerationPlan, prompt: Sequence[int], eos: list[int], ref: list[int],
                 max_new_tokens: int) -> dict:
    """One generation of ``plan`` on the toy target with its lifecycle, budget and output
    checked; its statistics (without timings)."""
    log: list[tuple] = []
    _spied(plan, log)
    out = decode(target, prompt, plan.sources, plan.shaper, plan.verifier, plan.budget, max_new_tokens, eos)
    where = f"{plan.label} (budget {plan.request.budget or 'default'})"
    assert out.tokens == ref, f"{where}: output differs from plain greedy decoding"
    for who in {w for w, _, _ in log}:
        hooks = [(h, t) for w, h, t in log if w == who and h in ("begin", "commit", "end", "abort")]
        assert hooks[0] == ("begin", list(prompt)), f"{where}, {who}: begin(prompt) must come first"
        assert hooks[-1] == ("end", list(prompt) + out.tokens), f"{where}, {who}: end(all tokens) must come last"
        committed = [t for h, toks in hooks[1:-1] for t in toks if h == "commit"]
        assert committed == out.tokens, f"{where}, {who}: the commits must add up to the generated tokens"
    sizes = [t for w, h, t in log if h == "shape"]
    assert all(size <= plan.budget for size in sizes), f"{where}: a tree exceeded the budget of {plan.budget}"
    calls = [h for w, h, _ in log if w == "shaper" and h in ("shape", "record", "commit")]
    steps = (len(calls) - 1) // 3
    assert calls == ["commit"] + ["shape", "record", "commit"] * steps, \
        f"{where}: the shaper must see commit(first token), then shape, record, commit per step: {calls[:7]}"
    stats = out.stats.to_json()
    stats["passes"] = [p[:2] for p in stats["passes"]]  # each pass's width and context; its seconds vary
    return {k: v for k, v in stats.items() if k not in ("time", "tokens_per_s", "overhead_vs_forward")}


def check_method(method: Method, prompts: Sequence[Sequence[int]] = ((1, 2, 3, 4, 1, 2, 3), (5, 6, 7, 5, 6)),
                 max_new_tokens: int = 24, vocab: int = 24) -> None:
    """A method (:class:`goose.methods.Method`) on :class:`ToyTarget`, built through the
    generation plan (:class:`goose.engine.GenerationRequest`) at its default budget, at
    ``@3`` and at ``auto`` (under a toy cost curve) where it takes them:

    * lifecycle: every source and the shaper get ``begin(prompt)`` first, then per step
      ``shape`` .. ``record`` .. ``commit``, and ``end(tokens)`` last; the commits add
      up to exactly the generated tokens (EOS and length cuts included);
    * budget: no tree has more nodes than the plan's budget;
    * identity: the output equals plain greedy decoding;
    * no cross-request leak by default: for a method that is not ``cross_request``,
      the same prompt twice, with one memory object passed both times, gives identical
      statistics and leaves that memory empty;
    * memories stay apart: for a ``cross_request`` method, a generation under one label
      writes only into its own memory, never into another label's, and a second
      label's first generation (with its own fresh memory) equals the first label's
      first one, so nothing is shared outside the memories (a module global, a class
      attribute).
    """
    target = ToyTarget(vocab)
    for budget in _budgets(method):
        request = GenerationRequest(method, budget, max_new_tokens=max_new_tokens)
        for prompt in prompts:
            ref = target.greedy(prompt, max_new_tokens)
            eos = [ref[len(ref) // 2]] if len(prompts) > 1 and prompt is prompts[-1] else []  # an EOS cut too
            if eos:
                ref = ref[: ref.index(eos[0]) + 1]
            mine, other = Memory(), Memory()
            runs = [_run_checked(target, request.plan(_toy_cost, vocab_size=vocab, label="a", memory=mine), prompt,
                                 eos, ref, max_new_tokens) for _ in range(2)]
            if not method.cross_request:
                assert runs[0] == runs[1], f"{method.name}: the same prompt twice gave different statistics (a leak?)"
                assert len(mine) == 0, f"{method.name}: wrote into the caller's memory without cross_request"
                continue
            assert len(other) == 0, f"{method.name}: label 'a' wrote into another label's memory"
            first_b = _run_checked(target, request.plan(_toy_cost, vocab_size=vocab, label="b", memory=other), prompt,
                                   eos, ref, max_new_tokens)
            assert first_b == runs[0], (f"{method.name}: a new label's first generation differs from the first "
                                        "label's: state is shared outside the caller's memories")
