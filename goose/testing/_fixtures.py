"""Fixtures for tests of plug-ins: random and oracle sources, random trees, and a toy
target that runs the decode loop without transformers."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

import numpy as np
import torch

from ..engine import Target
from ..sources import Proposal, TokenSource
from ..trees import DraftTree

__all__ = ["OracleSource", "RandomSource", "ToyTarget", "grow_tree", "random_streams", "random_tree"]


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


def grow_tree(pick: Callable[[int, int], int], max_nodes: int = 12, vocab: int = 8) -> DraftTree:
    """A valid tree (distinct sibling tokens) over a vocabulary of ``vocab``, grown by
    ``pick(lo, hi)``, which returns an integer in ``[lo, hi]``: the node count, the root
    token, then each node's parent and token. The one random-tree generator: a numpy
    generator drives it in :func:`random_tree`, Hypothesis' ``draw`` in goose's tests
    (``tests/strategies.py``), so failing trees shrink."""
    n = pick(1, max_nodes)
    parents, tokens, used = [-1], [pick(0, vocab - 1)], {0: set()}
    for _ in range(1, n):
        p = pick(0, len(parents) - 1)
        free = [t for t in range(vocab) if t not in used[p]]
        if not free:
            continue
        t = free[pick(0, len(free) - 1)]
        used[p].add(t)
        used[len(parents)] = set()
        parents.append(p)
        tokens.append(t)
    return DraftTree(tokens, parents)


def random_tree(rng: np.random.Generator, max_nodes: int = 12, vocab: int = 8) -> DraftTree:
    """A random valid tree (distinct sibling tokens) over a vocabulary of ``vocab``."""
    return grow_tree(lambda lo, hi: int(rng.integers(lo, hi + 1)), max_nodes, vocab)


def random_streams(rng: np.random.Generator, count: int, vocab: int) -> list[list[int]]:
    """``count`` random token streams over ``vocab``, with repeats a context source can match."""
    streams = []
    for _ in range(count):
        base = rng.integers(0, vocab, int(rng.integers(1, 12))).tolist()
        stream = base * int(rng.integers(1, 4)) + rng.integers(0, vocab, int(rng.integers(0, 6))).tolist()
        streams.append([int(t) for t in stream])
    return streams


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


class ToyTarget(Target):
    """A tiny deterministic language model as a decode-loop target, for method checks
    without transformers: the next-token logits after a sequence depend on its last
    two tokens (a peaked random table plus noise keyed on the last three), so greedy
    text falls into loops that context sources can match. Keeps no cache: each node's
    logits are computed from its own path, so it is exact by construction."""

    def __init__(self, vocab: int = 24, seed: int = 0, max_positions: int | None = None) -> None:
        rng = np.random.default_rng(seed)
        self.vocab, self.seed = vocab, seed
        self.vocab_size, self.max_positions = vocab, max_positions
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

    def forward_tree(self, tree: DraftTree, argmax_only: bool = False, bounded: bool = False) -> torch.Tensor:
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


