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

from .sources._base import Observation, Proposal, TokenSource
from .trees._base import TreeShaper
from .trees._tree import DraftTree
from .verify._base import Verifier
from .verify._greedy import GreedyVerifier
from .verify._reference import naive_greedy, target_law

__all__ = [
    "RandomSource",
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
    tokens in range; is deterministic; survives ``reset`` and ``observe``."""
    rng = np.random.default_rng(seed)
    src = make()
    assert isinstance(src, TokenSource), "make() must return a TokenSource"
    src.reset([])
    assert src.propose([]) == [], "a source must propose nothing for an empty context"
    for stream in _random_streams(rng, trials, vocab):
        src.reset(stream[:1])
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
            src.reset(stream)
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
