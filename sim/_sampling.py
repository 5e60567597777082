"""The sampling regime: a random target ``p`` and a draft ``q`` at every node.

A :class:`SamplingWorld` gives every path a target distribution ``p`` (a Dirichlet
draw over a small vocabulary) and a draft distribution ``q = (1 - c) * d + c * p``
(``d`` another Dirichlet draw; ``c`` = ``closeness``, 1 = the draft knows the target).
Trees are drafted from ``q`` by the same rules the real drafter follows, then
verified by goose's own walks:

* ``match``: the ``k`` most likely tokens of ``q`` per node, deterministic, verified
  by sample-and-match;
* ``rrs`` / ``traversal``: ``k`` children drawn from ``q`` without replacement,
  verified by recursive rejection sampling / Traversal Verification.

:func:`simulate_sampling` estimates the MAT (1 + accepted tokens per step) by Monte
Carlo; :func:`exact_sampling_mat` computes it exactly for one world by enumerating
every draft and verification outcome (small vocabularies only).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from goose.trees import DraftTree
from goose.verify import VERIFIERS, enumerate_random_law, sample_and_match

__all__ = ["SAMPLING_VERIFIERS", "SamplingWorld", "exact_sampling_mat", "simulate_sampling"]


def _match(tree: DraftTree, p_at: Callable[[int], np.ndarray], rng) -> object:  # noqa: ANN001
    return sample_and_match(tree, lambda v: rng.sample(p_at(v)))


SAMPLING_VERIFIERS = {name: cls.walk if cls.reads_q else _match for name, cls in VERIFIERS.items()}
"""Verifier name -> walk ``(tree, p_at, rng) -> Verdict``, derived from goose's one table of
sampling verifiers (:data:`goose.verify.VERIFIERS`): the walk a verifier that reads ``q``
runs, and sample-and-match (on top-k trees) for ``match``."""


@dataclass(frozen=True)
class SamplingWorld:
    """Random ``p`` and ``q`` per path (see the module docstring).

    Args:
        vocab: vocabulary size.
        concentration: Dirichlet concentration of ``p`` (small: peaked targets).
        closeness: ``c`` in ``q = (1 - c) d + c p``.
        children: children per node (top-k or drawn).
        depth: tree depth.
        seed: the world: the same seed gives the same ``p`` and ``q`` at every path.
    """

    vocab: int = 8
    concentration: float = 0.5
    closeness: float = 0.5
    children: int = 2
    depth: int = 3
    seed: int = 0

    def __post_init__(self) -> None:
        if self.vocab < 2 or self.children < 1 or self.depth < 1:
            raise ValueError("vocab >= 2, children >= 1 and depth >= 1 are needed")
        if not 0.0 <= self.closeness <= 1.0 or self.concentration <= 0:
            raise ValueError("closeness must lie in [0, 1] and concentration be > 0")

    def _rng(self, tag: int, path: tuple[int, ...]) -> np.random.Generator:
        return np.random.default_rng([self.seed, tag, len(path), *path])

    def p(self, path: tuple[int, ...]) -> np.ndarray:
        """``[vocab]`` target distribution after ``path``."""
        return self._rng(1, path).dirichlet(np.full(self.vocab, self.concentration))

    def q(self, path: tuple[int, ...]) -> np.ndarray:
        """``[vocab]`` draft distribution after ``path``."""
        d = self._rng(2, path).dirichlet(np.full(self.vocab, self.concentration))
        return (1.0 - self.closeness) * d + self.closeness * self.p(path)

    def draft(self, rng, drawn: bool) -> DraftTree:  # noqa: ANN001 - a goose.verify.Randomness
        """A full tree of ``children`` per node down to ``depth``: drawn from ``q`` without
        replacement (with ``rng``), or ``q``'s top-k."""
        tokens, parents, flags, qs = [0], [-1], [False], {}
        frontier = [(0, ())]
        while frontier:
            node, path = frontier.pop(0)
            if len(path) >= self.depth:
                continue
            q = self.q(path)
            if drawn:
                qs[node] = (np.arange(self.vocab), q)
                left, kids = q.copy(), []
                for _ in range(min(self.children, self.vocab)):
                    x = rng.sample(left / left.sum())
                    kids.append(x)
                    left[x] = 0.0
            else:
                kids = [int(t) for t in np.argsort(-q, kind="stable")[: self.children]]
            for x in kids:
                tokens.append(int(x))
                parents.append(node)
                flags.append(drawn)
                frontier.append((len(tokens) - 1, path + (int(x),)))
        return DraftTree(tokens, parents, drawn=flags, q=qs)

    def step(self, verifier: str, rng) -> int:  # noqa: ANN001
        """Draft and verify one tree; the number of accepted draft tokens."""
        tree = self.draft(rng, drawn=verifier != "match")
        paths = {v: tuple(int(tree.tokens[u]) for u in tree.path_to(v)) for v in range(tree.num_nodes)}
        return len(SAMPLING_VERIFIERS[verifier](tree, lambda v: self.p(paths[v]), rng).accepted)


class _NumpyRandomness:
    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng

    def accept(self, prob: float) -> bool:
        return bool(self.rng.random() < prob)

    def sample(self, probs: np.ndarray) -> int:
        return int(self.rng.choice(probs.shape[0], p=probs))


def simulate_sampling(world: SamplingWorld, verifier: str, steps: int, seed: int = 0,
                      worlds: int = 1) -> dict:
    """Monte Carlo MAT of ``verifier`` (a name of :data:`SAMPLING_VERIFIERS`): ``steps``
    steps in each of ``worlds`` worlds (seeds ``world.seed ..``), one shared
    ``numpy`` generator seeded by ``seed``. Returns ``{"mat", "se", "steps"}`` (``se``:
    the standard error of the MAT)."""
    if verifier not in SAMPLING_VERIFIERS:
        raise ValueError(f"unknown verifier {verifier!r}; known: {', '.join(SAMPLING_VERIFIERS)}")
    if steps < 1 or worlds < 1:
        raise ValueError("steps and worlds must be >= 1")
    rng = _NumpyRandomness(np.random.default_rng(seed))
    acc = np.array([SamplingWorld(world.vocab, world.concentration, world.closeness, world.children, world.depth,
                                  world.seed + w).step(verifier, rng)
                    for w in range(worlds) for _ in range(steps)], dtype=np.float64)
    return {"mat": 1.0 + float(acc.mean()), "se": float(acc.std(ddof=1) / np.sqrt(acc.size)) if acc.size > 1 else 0.0,
            "steps": int(acc.size)}


def exact_sampling_mat(world: SamplingWorld, verifier: str) -> float:
    """The exact expected MAT of ``verifier`` in ``world``: every drafting and
    verification outcome enumerated in float64 (``goose.verify.enumerate_random_law``)."""
    law = enumerate_random_law(lambda rng: (0,) * world.step(verifier, rng))
    return 1.0 + sum(len(k) * w for k, w in law.items())
