"""Source models: a simulated target and the sources that draft for it.

One simulated step is a :class:`World`: an implicit, infinite tree of token paths
below the root. At a node, the target's greedy choice is a categorical draw over
the node's candidates: the spine token (only on the spine, when a context match
exists) with probability ``alpha_d``, the recycled candidate of rank ``j`` with
probability ``betas[j]``, and an unproposed token with the rest. What the sources
propose (the step's *layout*: is there a match, where do the sources overlap) is
drawn first; the target's choice at every node of the shaped tree is drawn after
the tree is fixed. Siblings are mutually exclusive by construction (their
probabilities sum to at most 1).

Token ids inside a world: ``0`` = a token no source proposed, ``1`` = the spine
token, ``2 + j`` = the recycled candidate of rank ``j``.

Where a node sits (its *place*) can change what the recycled source earns there:
``root`` (no context match this step), ``root-match``, ``spine`` (a node of the
context chain) and ``branch`` (below a recycled node). Acceptance that comes in
bursts is a :class:`RegimeModel`: one :class:`SimulationModel` per state, the state
being how many draft tokens the previous step accepted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from itertools import pairwise

import numpy as np

from goose.sources import Proposal, TokenSource
from goose.theory import check_model

__all__ = ["PLACES", "ChainModel", "RecycledModel", "RegimeModel", "SimulationModel", "World", "WorldSource"]

OTHER, SPINE = 0, 1
PLACES = ("root", "root-match", "spine", "branch")


@dataclass(frozen=True)
class ChainModel:
    """A context source: one chain per step when a match exists.

    Attributes:
        alpha: acceptance of the first chain token given its parent was accepted.
        decay: ``alpha_d = alpha * decay**(d - 1)`` at depth d.
        match_prob: probability that a match exists at all in a step.
        max_len: tokens per proposal (the source is asked again when it runs out).
        hazards: if given, ``alpha_d = hazards[d - 1]`` instead (the chance that the
            d-th chain token is accepted given the first d - 1 were; the last value
            holds below), and ``alpha`` must equal ``hazards[0]``. Real copies that
            have started tend to go on, so real hazards rise with depth, which no
            ``decay <= 1`` can express.
        lengths: if given, ``lengths[d - 1]`` is the chance that a step's chain (when
            there is a match) is at least ``d`` tokens long, and no chain is longer
            than ``len(lengths)``; if empty, chains never end.
    """

    alpha: float
    decay: float = 1.0
    match_prob: float = 1.0
    max_len: int = 20
    hazards: tuple[float, ...] = ()
    lengths: tuple[float, ...] = ()

    def accept(self, depth: int) -> float:
        if self.hazards:
            return self.hazards[min(depth, len(self.hazards)) - 1]
        return self.alpha * self.decay ** (depth - 1)

    @classmethod
    def from_hazards(cls, hazards: Sequence[float], match_prob: float = 1.0, max_len: int = 20) -> ChainModel:
        """A chain with depth-conditional acceptances ``hazards`` (depth 1 first)."""
        hz = tuple(float(h) for h in hazards)
        if not hz:
            raise ValueError("hazards is empty: give at least the depth-1 acceptance")
        return cls(hz[0], 1.0, float(match_prob), max_len, hz)


@dataclass(frozen=True)
class RecycledModel:
    """A recycled source: ``betas[j]`` = acceptance of the rank-j candidate, any node.

    ``overlap`` is the probability that, at a spine node, the rank-0 candidate is
    the spine token itself (both sources propose the same token: one node).
    ``places`` overrides ``betas`` by where the node sits (keys from ``PLACES``).
    """

    betas: tuple[float, ...]
    overlap: float = 0.0
    places: Mapping[str, tuple[float, ...]] = field(default_factory=dict)

    def at(self, place: str) -> tuple[float, ...]:
        """The rank acceptances at a node of this place."""
        return tuple(self.places.get(place, self.betas))


@dataclass(frozen=True)
class SimulationModel:
    """The sources of a simulation and the target they draft for.

    Validated as probabilities with sibling sums <= 1. To simulate your own source,
    subclass it and extend :meth:`source_names`, :meth:`candidates` (what the target
    may choose at a node, with probabilities) and :meth:`propose` (what your source
    says there); use token ids >= 100 for your candidates. See
    ``tests/test_sim.py::KeywordModel``.
    """

    chain: ChainModel | None
    recycled: RecycledModel | None

    def source_names(self) -> list[str]:
        """Names of the simulated sources."""
        return (["context"] if self.chain else []) + (["recycled"] if self.recycled else [])

    def candidates(self, world: World, path: tuple[int, ...]) -> list[tuple[int, float]]:
        """``(token, probability)`` of every token the target may choose after ``path``
        (distinct tokens; probabilities sum to at most 1; the rest is "no source")."""
        out: list[tuple[int, float]] = []
        if world.spine_child(path):
            out.append((SPINE, self.chain.accept(len(path) + 1)))
        if self.recycled is not None:
            skip_first = world.overlaps(path)
            out += [(2 + j, b) for j, b in enumerate(self._betas(world, path)) if not (j == 0 and skip_first)]
        return out

    def _betas(self, world: World, path: tuple[int, ...]) -> list[float]:
        """The recycled rank acceptances at a node: its place's, scaled down where they
        and the chain's child there would sum above 1 (only possible with places or
        hazards, which ``__post_init__`` cannot check against every depth)."""
        betas = list(self.recycled.at(world.place(path)))
        if world.spine_child(path):
            room = 1.0 - self.chain.accept(len(path) + 1)
            total = sum(betas[1:] if world.overlaps(path) else betas)
            if total > room:
                betas = [b * room / total for b in betas]
        return betas

    def propose(self, world: World, source: str, path: tuple[int, ...]) -> list[Proposal]:
        """What the source called ``source`` proposes after ``path`` (true confidences)."""
        if source == "context":
            if not world.spine_child(path):
                return []
            n = int(min(self.chain.max_len, world.chain_len - len(path)))
            conf = tuple(self.chain.accept(len(path) + i + 1) for i in range(n))
            return [Proposal((SPINE,) * n, conf, source, "chain")]
        if source == "recycled":
            return [
                Proposal((SPINE if (j == 0 and world.overlaps(path)) else 2 + j,), (b,), source, f"rank{j}")
                for j, b in enumerate(self._betas(world, path))
            ]
        return []

    def to_json(self) -> dict:
        """Plain data: ``SimulationModel.from_json(m.to_json()) == m``."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping) -> SimulationModel:
        chain, rec = data.get("chain"), data.get("recycled")
        return cls(
            None if chain is None else ChainModel(**{**chain, "hazards": tuple(chain.get("hazards", ())),
                                                     "lengths": tuple(chain.get("lengths", ()))}),
            None if rec is None else RecycledModel(
                tuple(rec["betas"]), rec.get("overlap", 0.0),
                {k: tuple(v) for k, v in rec.get("places", {}).items()}),
        )

    def __post_init__(self) -> None:
        alpha = self.chain.alpha if self.chain else 0.0
        betas = self.recycled.betas if self.recycled else ()
        if (self.chain and (self.chain.hazards or self.chain.lengths)) or (self.recycled and self.recycled.places):
            check_model(alpha, (), self.chain.decay if self.chain else 1.0)
            self._check_places_and_hazards()
        else:
            check_model(alpha, betas, self.chain.decay if self.chain else 1.0)
        for name, x in (
            ("match_prob", self.chain.match_prob if self.chain else 1.0),
            ("overlap", self.recycled.overlap if self.recycled else 0.0),
        ):
            if not 0.0 <= x <= 1.0:
                raise ValueError(f"{name} = {x} is not a probability in [0, 1]")
        if self.chain is not None and self.chain.max_len < 1:
            raise ValueError("max_len must be >= 1")

    def _check_places_and_hazards(self) -> None:
        chain, rec = self.chain, self.recycled
        hazards = chain.hazards if chain else ()
        if hazards and chain.alpha != hazards[0]:
            raise ValueError(f"alpha = {chain.alpha} must equal hazards[0] = {hazards[0]} (see ChainModel.from_hazards)")
        for name, values in (("hazards", hazards), ("lengths", chain.lengths if chain else ())):
            for d, h in enumerate(values):
                if not 0.0 <= h <= 1.0:
                    raise ValueError(f"{name}[{d}] = {h} is not a probability in [0, 1]")
        if chain and any(a < b for a, b in pairwise(chain.lengths)):
            raise ValueError(f"lengths must be non-increasing (they are P(length >= d)), got {list(chain.lengths)}")
        unknown = set(rec.places) - set(PLACES) if rec else set()
        if unknown:
            raise ValueError(f"unknown places {sorted(unknown)}: places are {', '.join(PLACES)}")
        for place in PLACES if rec else ():
            check_model(0.0, rec.at(place))  # probabilities, non-increasing, sum <= 1


@dataclass(frozen=True)
class RegimeModel:
    """Acceptance that comes in bursts: the step's sources and target are those of
    ``states[s]``, where ``s`` is how many draft tokens the previous step accepted,
    capped at ``len(states) - 1`` (the first step is in state 0). One state is the
    plain, step-independent :class:`SimulationModel`."""

    states: tuple[SimulationModel, ...]

    def __post_init__(self) -> None:
        if not self.states:
            raise ValueError("a regime model needs at least one state")
        names = {tuple(m.source_names()) for m in self.states}
        if len(names) > 1:
            raise ValueError(f"every state must have the same sources, got {sorted(names)}")

    def next_state(self, accepted: int) -> int:
        """The state after a step that accepted ``accepted`` draft tokens."""
        return min(int(accepted), len(self.states) - 1)

    def source_names(self) -> list[str]:
        return self.states[0].source_names()

    def to_json(self) -> dict:
        return {"states": [m.to_json() for m in self.states]}

    @classmethod
    def from_json(cls, data: Mapping) -> RegimeModel:
        return cls(tuple(SimulationModel.from_json(m) for m in data["states"]))


class World:
    """One simulated step: what the sources propose (its layout) and, through
    :meth:`candidates`, what the target may choose at each node."""

    def __init__(self, model: SimulationModel, rng: np.random.Generator, max_depth: int) -> None:
        self.model = model
        chain, rec = model.chain, model.recycled
        self.has_match = bool(chain is not None and rng.random() < chain.match_prob)
        self.chain_len = float("inf")
        if self.has_match and chain.lengths:  # drawn only when given: older models keep their streams
            self.chain_len = int(np.sum(rng.random() < np.asarray(chain.lengths)))
        # what the sources will propose is fixed up front (the "layout" of the step)
        if rec is not None and rec.overlap > 0 and self.has_match:
            self._overlap = rng.random(max_depth + 1) < rec.overlap  # [spine depth]
        else:
            self._overlap = np.zeros(0, dtype=bool)
        self.layout = (self.has_match, self.chain_len, self._overlap.tobytes())

    def on_spine(self, path: Sequence[int]) -> bool:
        """Whether the node reached by ``path`` is the root of a matched step or a chain node."""
        return self.has_match and len(path) <= self.chain_len and all(t == SPINE for t in path)

    def spine_child(self, path: Sequence[int]) -> bool:
        """Whether the chain goes on below the node reached by ``path``."""
        return len(path) < self.chain_len and self.on_spine(path)

    def place(self, path: Sequence[int]) -> str:
        """Where the node reached by ``path`` sits (one of ``PLACES``)."""
        if not path:
            return "root-match" if self.has_match else "root"
        return "spine" if self.on_spine(path) else "branch"

    def overlaps(self, path: tuple[int, ...]) -> bool:
        """Whether the rank-0 recycled candidate at this spine node is the spine token."""
        d = len(path)
        return d < self._overlap.size and bool(self._overlap[d]) and self.spine_child(path)

    def candidates(self, path: tuple[int, ...]) -> list[tuple[int, float]]:
        """``(token, acceptance)`` of every candidate at the node reached by ``path``."""
        return self.model.candidates(self, path)

    def accept_prob(self, path: tuple[int, ...], token: int) -> float:
        """True a(v) of a node carrying ``token`` below ``path`` (0 if never chosen)."""
        return dict(self.candidates(path)).get(token, 0.0)

    def propose(self, source: str, path: tuple[int, ...]) -> list[Proposal]:
        """What the source called ``source`` proposes after ``path``."""
        return self.model.propose(self, source, path)


class WorldSource(TokenSource):
    """A token source that reads the current world; confidences are the true values
    (the simulator predicts what a tree shape earns when acceptance is known)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.kind = "spine" if name == "context" else "branch"
        self.world: World | None = None

    def propose(self, context: Sequence[int], path: Sequence[int] = ()) -> list[Proposal]:
        if self.world is None or not context:
            return []
        return self.world.propose(self.name, tuple(int(t) for t in path))
