"""What real sources say about their own proposals, so the simulator can run a
method's real shaper with its acceptance estimator.

The plain simulator hands its shapers the true acceptances of its world. goose's
shapers do not see those: they see the sources' raw confidences, turned into
estimates by an :class:`goose.trees.AcceptanceEstimator` that learns as it goes.
Where a shaper's tree depends on those estimates (budget ``auto``, best-first
order), an oracle shapes different trees than the real method does: on the four
math_reasoning prompts the oracle kept 5.3 nodes a step where ``goose@auto`` kept 3.0
(a probe, docs/simulator.md).

:class:`Beliefs` are the raw confidences a method's sources gave in recorded runs,
kept with what happened to each proposal:

* ``chains``: every chain the context source proposed at a step's root, with its
  confidences and key and how many of its tokens the text followed;
* ``recycled``: the recycled source's confidences by where the node sat, its rank
  and whether it was the next token.

A :class:`BeliefWorld` draws a recorded chain for each matched step (its length and
the tokens the target takes from it come with it), lets the target choose at every
other node as the fitted :class:`SimulationModel` says, and gives each recycled
proposal a confidence drawn from those recorded at its place and rank *with the same
outcome*. The estimator then sees confidences that carry as much, and as little, as
the real ones did.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from goose.sources import Proposal

from ._models import SPINE, SimulationModel, World

__all__ = ["BeliefWorld", "Beliefs", "RecordedChain", "fit_beliefs"]

Trace = str | Path | tuple[dict, list[dict]]


@dataclass(frozen=True)
class RecordedChain:
    """What the context source proposed at a step's root: the chain's confidences
    (empty: no match), its key and how many of its leading tokens the committed
    text followed."""

    confidence: tuple[float, ...]
    key: str
    accepted: int


@dataclass(frozen=True)
class Beliefs:
    """Raw confidences of a method's sources, recorded with their outcomes.

    Attributes:
        chains: the recorded root proposals of the context source, every step's
            (an empty chain where it had no match).
        recycled: ``"place/rank/hit"`` or ``"place/rank/miss"`` -> the confidences the
            recycled source gave there (``place`` from :data:`sim.PLACES`).
        agree: the chance that the recycled source's first guess at a chain node is
            the chain's own next token, when the target takes that token and when
            it does not. The two sources agree far more often when the chain is
            right, which is what makes a split between them a warning.
    """

    chains: tuple[RecordedChain, ...] = ()
    recycled: Mapping[str, tuple[float, ...]] = field(default_factory=dict)
    agree: tuple[float, float] = (0.0, 0.0)

    def draw_chain(self, rng: np.random.Generator) -> RecordedChain | None:
        """One recorded step's root proposal, ``None`` if none was recorded."""
        return self.chains[int(rng.integers(len(self.chains)))] if self.chains else None

    def draw_recycled(self, rng: np.random.Generator, place: str, rank: int, hit: bool) -> float | None:
        """A recorded confidence of the rank-``rank`` recycled candidate at ``place``
        with this outcome; the same rank at any place where that place has none, and
        ``None`` where nothing was recorded."""
        outcome = "hit" if hit else "miss"
        pool = self.recycled.get(f"{place}/{rank}/{outcome}")
        if not pool:
            pool = self._any_place.get((rank, outcome))
        if not pool:
            return None
        return float(pool[int(rng.integers(len(pool)))])

    @cached_property
    def _any_place(self) -> dict[tuple[int, str], tuple[float, ...]]:
        """The recycled confidences by rank and outcome, every place together."""
        acc: dict[tuple[int, str], list[float]] = {}
        for key, values in self.recycled.items():
            _, rank, outcome = key.split("/")
            acc.setdefault((int(rank), outcome), []).extend(values)
        return {k: tuple(v) for k, v in acc.items()}

    def to_json(self) -> dict:
        """Plain data: ``Beliefs.from_json(b.to_json()) == b``."""
        return {"chains": [[list(c.confidence), c.key, c.accepted] for c in self.chains],
                "recycled": {k: list(v) for k, v in self.recycled.items()}, "agree": list(self.agree)}

    @classmethod
    def from_json(cls, data: Mapping) -> Beliefs:
        return cls(tuple(RecordedChain(tuple(float(x) for x in c[0]), str(c[1]), int(c[2]))
                         for c in data["chains"]),
                   {k: tuple(float(x) for x in v) for k, v in data["recycled"].items()},
                   tuple(float(x) for x in data.get("agree", (0.0, 0.0))))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Beliefs) and self.to_json() == other.to_json()

    __hash__ = None


def fit_beliefs(traces: Sequence[Trace], context: str | None = "context", recycled: str | None = "recycled",
                ranks: int = 8) -> Beliefs:
    """The raw confidences a method's sources gave in ``traces`` (paths, or
    ``(header, steps)`` pairs as :func:`sim.replay` records them), at the nodes where
    the trace can tell the outcome: the root chain of every step, and every recycled
    query on the committed text (as :func:`sim.fit_model` counts them)."""
    from ._counting import recycled_queries  # one definition of where a query sat
    from ._replay import load_trace

    chains: list[RecordedChain] = []
    pools: dict[str, list[float]] = {}
    agree, chain_nodes = np.zeros(2), np.zeros(2)  # [taken, not taken]
    for trace in traces:
        header, steps = load_trace(trace) if isinstance(trace, (str, Path)) else trace
        full = list(header["prompt"]) + list(header["tokens"])
        for s in steps:
            ref = s["reference"]
            if not ref:
                continue
            root = next((q for q in s["proposals"].get(context, []) if q["depth"] == 0 and q["tokens"]), None)
            chain: list[int] = []
            if root is not None:
                chain, conf = list(root["tokens"][0]), root["confidence"][0]
                k = 0
                while k < min(len(chain), len(ref)) and chain[k] == ref[k]:
                    k += 1
                chains.append(RecordedChain(tuple(float(c) for c in conf), str(root["keys"][0]), k))
            elif context is not None:
                chains.append(RecordedChain((), "", 0))
            for q, d, place, spine in recycled_queries(s, recycled, full, chain):
                if spine is not None and q["tokens"]:
                    taken = int(spine != ref[d])
                    chain_nodes[taken] += 1
                    agree[taken] += q["tokens"][0][0] == spine
                for j, (tok, conf) in enumerate(zip(q["tokens"][:ranks], q["confidence"][:ranks], strict=True)):
                    if not tok or tok[0] == spine:
                        continue  # the chain's own token: one node with the chain
                    pools.setdefault(f"{place}/{j}/{'hit' if tok[0] == ref[d] else 'miss'}", []).append(float(conf[0]))
    rates = tuple(float(a / n) if n else 0.0 for a, n in zip(agree, chain_nodes, strict=True))
    return Beliefs(tuple(chains), {k: tuple(v) for k, v in sorted(pools.items())}, rates)


class BeliefWorld(World):
    """A :class:`World` whose sources speak as the recorded ones did (:class:`Beliefs`).

    A matched step takes a recorded chain: its length, its confidences, its key, and
    its outcome (the target takes its first ``accepted`` tokens and not the next).
    Where the chain stops being taken, the recycled candidates share the chance that
    is left, ``beta_j / (1 - a_d)`` (``a_d`` the fitted chain's acceptance there), so
    their rates over all steps stay the fitted ones. The target's choice at a node is
    drawn once, when first asked (:meth:`choice`), and each recycled proposal gets a
    recorded confidence of its place, rank and outcome.
    """

    def __init__(self, model: SimulationModel, rng: np.random.Generator, max_depth: int, beliefs: Beliefs) -> None:
        super().__init__(model, rng, max_depth)
        self.beliefs = beliefs
        self.recorded = beliefs.draw_chain(rng) if model.chain is not None else None
        if self.recorded is not None:
            self.has_match = bool(self.recorded.confidence)
            self._overlap = np.zeros(0, dtype=bool)
        if self.recorded is not None and not self.has_match:
            self.recorded = None
        elif self.recorded is not None:
            self.chain_len = len(self.recorded.confidence)
            if model.recycled is not None:  # agreement follows the outcome (Beliefs.agree)
                depth = np.arange(min(max_depth + 1, self.chain_len))
                chance = np.where(depth + 1 <= self.recorded.accepted, *beliefs.agree)
                self._overlap = rng.random(depth.size) < chance

    def candidates(self, path: tuple[int, ...]) -> list[tuple[int, float]]:
        out = self.model.candidates(self, path)
        if self.recorded is None or not self.spine_child(path):
            return out
        d = len(path) + 1
        if d <= self.recorded.accepted:  # the recorded text took this chain token
            return [(t, 1.0 if t == SPINE else 0.0) for t, _ in out]
        left = max(1.0 - self.model.chain.accept(d), 1e-12)
        rest = [(t, p / left) for t, p in out if t != SPINE]
        total = sum(p for _, p in rest)
        scale = 1.0 / total if total > 1.0 else 1.0
        return [(SPINE, 0.0)] + [(t, p * scale) for t, p in rest]

    def propose(self, source: str, path: tuple[int, ...]) -> list[Proposal]:
        """What ``source`` proposes after ``path``, with recorded confidences."""
        props = self.model.propose(self, source, path)
        if source == "context" and self.recorded is not None:
            conf = self.recorded.confidence[len(path):]
            return [Proposal(p.tokens, conf[: len(p.tokens)], source, self.recorded.key) for p in props]
        if source != "recycled":
            return props
        out, place, pick = [], self.place(path), self.choice(path)
        for p in props:
            rank = int(p.key.removeprefix("rank"))
            conf = self.beliefs.draw_recycled(self.rng, place, rank, p.tokens[0] == pick)
            out.append(Proposal(p.tokens, p.confidence if conf is None else (conf,), source, p.key))
        return out
