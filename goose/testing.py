"""Conformance checks for plug-ins: run them in your own test suite.

Each ``check_*`` function raises ``AssertionError`` (with a message saying which
contract broke) and returns ``None`` on success::

    from goose.testing import check_source, check_shaper, check_verifier

    def test_my_source():
        check_source(lambda: MySource())

The built-in sources, shapers and verifiers run these in goose's own tests.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable, Sequence

import numpy as np
import torch

from .sources import Observation, Proposal, TokenSource
from .trees import DraftTree, TreeShaper
from .verify import GreedyVerifier, Verifier, naive_greedy, target_law

__all__ = [
    "OracleSource",
    "RandomSource",
    "ToyTarget",
    "check_method",
    "check_shaper",
    "check_source",
    "check_verifier",
    "chi_square_pvalue",
    "random_tree",
]


class RandomSource(TokenSource):
    """A source whose proposals are pseudo-random but a pure function of
    ``(seed, context tail, path)``: handy to drive shapers in tests."""

    def __init__(
        self, seed: int = 0, vocab: int = 20, max_proposals: int = 4, max_len: int = 4, name: str = "random"
    ) -> None:
        self.seed, self.vocab, self.name = seed, vocab, name
        self.max_proposals, self.max_len = max_proposals, max_len

    def propose(self, context: Sequence[int], path: Sequence[int] = ()) -> list[Proposal]:
        if not context:
            return []
        text = repr((self.seed, self.name, list(context[-3:]), list(path))).encode()
        rng = np.random.default_rng(int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "little"))
        out = []
        for _ in range(int(rng.integers(0, self.max_proposals + 1))):
            n = int(rng.integers(1, self.max_len + 1))
            tokens = tuple(int(t) for t in rng.integers(0, self.vocab, n))
            out.append(Proposal(tokens, tuple(float(c) for c in rng.random(n)), self.name, f"r{n}"))
        return out


def random_tree(rng: np.random.Generator, max_nodes: int = 12, vocab: int = 8) -> DraftTree:
    """A random valid tree (distinct sibling tokens) over a vocabulary of ``vocab``."""
    n = int(rng.integers(1, max_nodes + 1))
    parents, tokens, used = [-1], [int(rng.integers(vocab))], {0: set()}
    for v in range(1, n):
        p = int(rng.integers(0, v))
        free = [t for t in range(vocab) if t not in used[p]]
        if not free:
            continue
        t = int(rng.choice(free))
        used[p].add(t)
        used[len(parents)] = set()
        parents.append(p)
        tokens.append(t)
    return DraftTree(tokens, parents)


def _random_streams(rng: np.random.Generator, count: int, vocab: int) -> list[list[int]]:
    streams = []
    for _ in range(count):
        base = rng.integers(0, vocab, int(rng.integers(1, 12))).tolist()
        stream = base * int(rng.integers(1, 4)) + rng.integers(0, vocab, int(rng.integers(0, 6))).tolist()
        streams.append([int(t) for t in stream])
    return streams


def check_source(make: Callable[[], TokenSource], vocab: int = 16, trials: int = 30, seed: int = 0) -> None:
    """A source: proposes nothing for an empty context; returns valid ``Proposal`` s of
    tokens in range; is deterministic; survives ``begin``, ``commit`` and ``observe``."""
    rng = np.random.default_rng(seed)
    src = make()
    assert isinstance(src, TokenSource), "make() must return a TokenSource"
    src.begin([])
    assert src.propose([]) == [], "a source must propose nothing for an empty context"
    for stream in _random_streams(rng, trials, vocab):
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
    for trial, stream in enumerate(_random_streams(rng, trials, 20)):
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


def chi_square_pvalue(counts: Counter, law: dict) -> float:
    """Chi-square goodness of fit of observed ``counts`` to an exact ``law`` (outcome ->
    probability). Outcomes expected fewer than 5 times are pooled into one bin so the
    chi-square approximation holds; returns 1.0 when fewer than two bins remain."""
    from scipy import stats

    n = sum(counts.values())
    keys = sorted(law, key=law.get, reverse=True)
    expected = np.array([law[k] for k in keys]) * n
    observed = np.array([counts.get(k, 0) for k in keys], dtype=float)
    big = expected >= 5
    exp = np.append(expected[big], expected[~big].sum())
    obs = np.append(observed[big], observed[~big].sum())
    if exp[-1] < 5:  # the pooled rest is itself too small: fold it into the last big bin
        exp, obs = exp[:-1], obs[:-1]
        if exp.size:
            exp[-1] += expected[~big].sum()
            obs[-1] += observed[~big].sum()
    if exp.size < 2:
        return 1.0
    return float(stats.chisquare(obs, exp * obs.sum() / exp.sum()).pvalue)


class OracleSource(TokenSource):
    """Knows the true continuation: proposes, after ``context + path``, the next
    ``max_len`` tokens of ``reference`` when ``context + path`` is a prefix of it (with
    confidence 1), else nothing. Standing in for a method's sources (same names and
    kinds) it forces every draft to be accepted, so an identity test also proves
    that accepted drafts were emitted right (MAT > 1)."""

    def __init__(self, reference: Sequence[int], name: str = "oracle", kind: str = "branch", max_len: int = 4) -> None:
        self.reference, self.name, self.kind, self.max_len = [int(t) for t in reference], name, kind, max_len

    def propose(self, context: Sequence[int], path: Sequence[int] = ()) -> list[Proposal]:
        seen = len(context) + len(path)
        if not context or seen >= len(self.reference):
            return []
        if list(context[-4:]) != self.reference[len(context) - min(4, len(context)) : len(context)] or \
                list(path) != self.reference[len(context) : seen]:
            return []
        tokens = tuple(self.reference[seen : seen + self.max_len])
        return [Proposal(tokens, (1.0,) * len(tokens), self.name, "oracle")]


class ToyTarget:
    """A tiny deterministic language model as a decode-loop target, for method checks
    without transformers: the next-token logits after a sequence depend on its last
    two tokens (a peaked random table plus noise keyed on the last three), so greedy
    text falls into loops that context sources can match. Keeps no cache: each node's
    logits are computed from its own path, so it is exact by construction."""

    argmax_only_logits = False

    def __init__(self, vocab: int = 24, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.vocab, self.seed = vocab, seed
        self.table = rng.integers(0, vocab, (vocab, vocab))  # [prev, token] -> preferred next
        self.history: list[int] = []
        self.pending: list[int] | None = None

    def logits_after(self, seq: Sequence[int]) -> torch.Tensor:
        """``[vocab]`` float64 logits after ``seq``."""
        a, b = (int(seq[-2]) if len(seq) > 1 else 0), int(seq[-1])
        c = int(seq[-3]) if len(seq) > 2 else 0
        noise = np.random.default_rng([self.seed, a, b, c]).normal(size=self.vocab)
        out = noise * 0.5
        out[self.table[a, b]] += 3.0
        return torch.from_numpy(out)

    def prefill(self, prompt: Sequence[int]) -> torch.Tensor:
        self.history = [int(t) for t in prompt]
        return self.logits_after(self.history)

    def prefill_topk(self, k: int, positions: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray] | None:
        return None

    def forward_tree(self, tree: DraftTree, argmax_only: bool = False) -> torch.Tensor:
        rows = [self.logits_after(self.history + [int(tree.tokens[u]) for u in [0, *tree.path_to(v)]])
                for v in range(tree.num_nodes)]
        return torch.stack(rows)  # [num_nodes, vocab]

    def commit(self, tree: DraftTree, accepted: Sequence[int]) -> None:
        self.history += [int(tree.tokens[0])] + [int(tree.tokens[v]) for v in accepted]

    def rewind(self, n: int) -> None:
        del self.history[len(self.history) - n :]

    def cache_length(self) -> int:
        return len(self.history)

    def greedy(self, prompt: Sequence[int], max_new_tokens: int) -> list[int]:
        """Plain greedy decoding: the tokens every lossless greedy method must emit."""
        seq = [int(t) for t in prompt]
        for _ in range(max_new_tokens):
            seq.append(int(self.logits_after(seq).argmax()))
        return seq[len(prompt):]


def _logged(obj: object, hook: str, log: list[tuple], entry: Callable[..., tuple]) -> None:
    """Replace ``obj.hook`` by a wrapper that appends ``entry(*args, result)`` to ``log``."""
    inner = getattr(obj, hook)

    def wrapper(*args: object) -> object:
        result = inner(*args)
        log.append(entry(*args, result))
        return result

    setattr(obj, hook, wrapper)


def _spied(method: object, ctx: object, log: list[tuple]) -> tuple[list[TokenSource], TreeShaper, int]:
    """A method's fresh parts, with their lifecycle calls logged as ``(who, hook, tokens)``
    and the shaper's ``shape`` / ``record`` as ``("shaper", "shape", tree size)`` /
    ``("shaper", "record", accepted length)``."""
    drafting = method.build(ctx)  # type: ignore[attr-defined]
    parts = [(f"source{i}", s) for i, s in enumerate(drafting.sources)] + [("shaper", drafting.shaper)]
    for who, obj in parts:
        for hook in ("begin", "commit", "end"):
            _logged(obj, hook, log, lambda tokens, _, w=who, h=hook: (w, h, list(tokens)))
    _logged(drafting.shaper, "shape", log, lambda context, sources, budget, tree: ("shaper", "shape", tree.size))
    _logged(drafting.shaper, "record", log, lambda tree, accepted, _: ("shaper", "record", len(accepted)))
    return drafting.sources, drafting.shaper, drafting.budget


def check_method(method: object, prompts: Sequence[Sequence[int]] = ((1, 2, 3, 4, 1, 2, 3), (5, 6, 7, 5, 6)),
                 max_new_tokens: int = 24, vocab: int = 24) -> None:
    """A method (:class:`goose.methods.Method`) on :class:`ToyTarget`:

    * lifecycle: every source and the shaper get ``begin(prompt)`` first, then per step
      ``shape`` .. ``record`` .. ``commit``, and ``end(tokens)`` last; the commits add
      up to exactly the generated tokens (EOS and length cuts included);
    * budget: no tree has more nodes than the method's budget;
    * identity: the output equals plain greedy decoding;
    * no cross-request leak by default: for a method that is not ``cross_request``,
      the same prompt twice, with one memory object passed both times, gives identical
      statistics and leaves that memory empty.
    """
    from .engine import decode
    from .methods import Memory

    target = ToyTarget(vocab)
    for prompt in prompts:
        ref = target.greedy(prompt, max_new_tokens)
        eos = [ref[len(ref) // 2]] if len(prompts) > 1 and prompt is prompts[-1] else []  # an EOS cut too
        if eos:
            ref = ref[: ref.index(eos[0]) + 1]
        memory, runs = Memory(), []
        for _ in range(2):
            log: list[tuple] = []
            sources, shaper, budget = _spied(method, method.context(budget=None, memory=memory), log)  # type: ignore[attr-defined]
            out = decode(target, prompt, sources, shaper, GreedyVerifier(), budget, max_new_tokens, eos)
            assert out.tokens == ref, f"{method.name}: output differs from plain greedy decoding"  # type: ignore[attr-defined]
            for who in {w for w, _, _ in log}:
                hooks = [(h, t) for w, h, t in log if w == who and h in ("begin", "commit", "end")]
                assert hooks[0] == ("begin", list(prompt)), f"{who}: begin(prompt) must come first"
                assert hooks[-1] == ("end", list(prompt) + out.tokens), f"{who}: end(all tokens) must come last"
                committed = [t for h, toks in hooks[1:-1] for t in toks if h == "commit"]
                assert committed == out.tokens, f"{who}: the commits must add up to the generated tokens"
            sizes = [t for w, h, t in log if h == "shape"]
            assert all(size <= budget for size in sizes), f"a tree exceeded the budget of {budget}: {max(sizes)}"
            calls = [h for w, h, _ in log if w == "shaper" and h in ("shape", "record", "commit")]
            steps = (len(calls) - 1) // 3
            assert calls == ["commit"] + ["shape", "record", "commit"] * steps, \
                f"the shaper must see commit(first token), then shape, record, commit per step: {calls[:7]}"
            stats = out.stats.to_json()
            runs.append({k: v for k, v in stats.items() if k not in ("time", "tokens_per_s", "overhead_vs_forward")})
        if not method.cross_request:  # type: ignore[attr-defined]
            assert runs[0] == runs[1], f"{method.name}: the same prompt twice gave different statistics (a leak?)"  # type: ignore[attr-defined]
            assert len(memory) == 0, f"{method.name}: wrote into the caller's memory without cross_request"  # type: ignore[attr-defined]
