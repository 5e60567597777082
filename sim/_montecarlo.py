"""Monte Carlo: run real goose shapers and the real greedy verifier on simulated steps."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from goose.theory import CostCurve, expected_accepted
from goose.trees import DraftTree, TreeShaper
from goose.verify import GreedyVerifier, Verifier

from ._beliefs import Beliefs, BeliefWorld
from ._models import OTHER, RegimeModel, SimulationModel, World, WorldSource

__all__ = ["SimResult", "simulate"]


@dataclass
class SimResult:
    """What one (shaper, budget) configuration earned over the simulated steps.

    Attributes:
        mat: mean tokens per step (accepted draft + bonus).
        ci95: 95% confidence interval of ``mat`` (normal approximation; from batch
            means under a regime model, whose steps are correlated).
        theory_mat: mean over steps of ``1 + E[A(T)]`` of each step's tree under the
            model's true acceptances (``goose.theory.expected_accepted``).
        accept_rate: per source, accepted / drafted nodes.
        accept_per_opportunity: per source, accepted / (accepted-or-root nodes that
            had at least one child from that source).
        histogram: ``histogram[n]`` = steps that accepted n draft tokens.
        mean_nodes: mean tree size (draft nodes).
        predicted_speedup: tokens/s relative to plain decoding under the cost curve
            (``None`` without one).
    """

    shaper: str
    budget: int
    steps: int
    mat: float
    ci95: tuple[float, float]
    theory_mat: float
    accept_rate: dict[str, float] = field(default_factory=dict)
    accept_per_opportunity: dict[str, float] = field(default_factory=dict)
    histogram: list[int] = field(default_factory=list)
    mean_nodes: float = 0.0
    predicted_speedup: float | None = None

    def to_json(self) -> dict:
        return {
            "shaper": self.shaper,
            "budget": self.budget,
            "steps": self.steps,
            "mat": self.mat,
            "ci95": list(self.ci95),
            "theory_mat": self.theory_mat,
            "accept_rate": self.accept_rate,
            "accept_per_opportunity": self.accept_per_opportunity,
            "histogram": self.histogram,
            "mean_nodes": self.mean_nodes,
            "predicted_speedup": self.predicted_speedup,
        }


@dataclass
class _Step:
    """A shaped tree with everything the simulated target needs about it."""

    tree: DraftTree
    cand_tokens: np.ndarray  # [num_nodes, m + 1] candidate tokens, then OTHER
    cand_cum: np.ndarray  # [num_nodes, m] cumulative candidate probabilities
    value: float  # E[A(T)] under the true acceptances
    paths: list[tuple[int, ...]]  # [num_nodes] token path from the root


def _prepare(tree: DraftTree, world: World) -> _Step:
    n = tree.num_nodes
    paths: list[tuple[int, ...]] = [()] * n
    for v in range(1, n):
        paths[v] = paths[int(tree.parents[v])] + (int(tree.tokens[v]),)
    cands = [world.candidates(p) for p in paths]
    m = max((len(c) for c in cands), default=0)
    tokens = np.full((n, m + 1), OTHER, dtype=np.int64)
    cum = np.full((n, m), np.inf)
    for v, c in enumerate(cands):
        if c:
            tokens[v, : len(c)] = [t for t, _ in c]
            cum[v, : len(c)] = np.cumsum([p for _, p in c])
    accept = [1.0] + [world.accept_prob(paths[int(tree.parents[v])], int(tree.tokens[v])) for v in range(1, n)]
    return _Step(tree, tokens, cum, expected_accepted(tree.parents, accept), paths)


def step_price(cost: Callable[..., float] | None) -> Callable[..., float] | None:
    """What the simulator prices a step by, given the curve a run's trees were cut by: a
    measured :class:`CostCurve` made non-decreasing (:meth:`CostCurve.monotone`; a dip
    such as c(2) below c(1) would price a node below nothing), any other cost as it is."""
    return cost.monotone() if isinstance(cost, CostCurve) else cost


def cost_at(cost: Callable[..., float], n: float, context: float) -> float:
    """``cost(n)``, read at ``context`` where the curve was measured at several."""
    return cost(n, context=context) if isinstance(cost, CostCurve) and cost.contexts is not None else cost(n)


def plain_decoding_seconds(cost: Callable[..., float], prompt_tokens: int, decode: int) -> float:
    """Plain decoding's ``decode`` one-token passes after a prompt, each priced at the
    context mid-generation."""
    return decode * cost_at(cost, 1, prompt_tokens + decode / 2)


def _half_width(tokens: np.ndarray, correlated: bool, batches: int = 40) -> float:
    """Half-width of the 95% interval of the mean tokens per step. Under a regime
    model steps are correlated through the state, so the standard error comes from
    ``batches`` batch means (each much longer than a burst) instead of single steps."""
    if tokens.size < 2:
        return float("inf")
    if correlated and tokens.size >= 10 * batches:
        means = tokens[: tokens.size // batches * batches].reshape(batches, -1).mean(axis=1)
        return 1.96 * float(means.std(ddof=1)) / math.sqrt(batches)
    return 1.96 * float(tokens.std(ddof=1)) / math.sqrt(tokens.size)


def simulate(
    model: SimulationModel | RegimeModel,
    make_shaper: Callable[[], TreeShaper],
    budget: int,
    steps: int,
    seed: int = 0,
    cost: CostCurve | None = None,
    name: str = "",
    stateless: bool = False,
    verifier: Verifier | None = None,
    progress: Callable[[int], None] | None = None,
    beliefs: Beliefs | None = None,
    episode: int | None = None,
    prompt: int | None = None,
) -> SimResult:
    """Simulate ``steps`` decoding steps of one shaper at one budget.

    Args:
        model: the source models (and through them the simulated target); a
            :class:`RegimeModel` draws each step from the state the previous step left.
        make_shaper: builds the shaper under test (called once).
        budget: draft nodes per step.
        steps: number of simulated steps (> 0).
        seed: all randomness comes from ``numpy.random.default_rng(seed)``.
        cost: forward cost curve; gives ``predicted_speedup``.
        stateless: the shaper's tree depends only on the proposals it sees (no
            learning), so trees are cached per step layout -- a pure speed-up.
        verifier: defaults to the real :class:`goose.verify.GreedyVerifier`.
        beliefs: the sources speak with recorded confidences (:class:`BeliefWorld`),
            for shapers that estimate acceptance from them (a method's real shaper);
            without, they tell the shaper the true acceptances.
        episode: tokens per generation. Each prompt of a real run starts with fresh
            parts: a learning shaper's estimator and ``auto``'s running rate know
            only that generation's steps. With ``episode``, the shaper is built
            again (and the regime state reset) once a generation has made that
            many tokens, and its last step makes only the tokens that were left.
            Without, the steps are one endless generation.
        prompt: the prompt's length in tokens. The shaper is then shown a context
            of the prompt and the tokens made so far in the generation (``auto``
            reads its cost curve there), and step costs are read at that context
            too, for a :class:`~goose.theory.CostCurve` measured at several.
            Without, the context is one token.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if episode is not None and episode < 1:
        raise ValueError(f"episode must be >= 1 tokens (None: one endless generation), got {episode}")
    if prompt is not None and prompt < 1:
        raise ValueError(f"prompt must be >= 1 tokens (None: a one-token context), got {prompt}")
    rng = np.random.default_rng(seed)
    shaper = make_shaper()
    verifier = verifier or GreedyVerifier()
    regime = model if isinstance(model, RegimeModel) else RegimeModel((model,))
    state = 0
    sources = [WorldSource(name) for name in regime.source_names()]
    names = [s.name for s in sources]
    cache: dict[tuple, _Step] = {}
    lengths = np.zeros(steps, dtype=np.int64)
    values = np.zeros(steps)
    nodes = np.zeros(steps)
    drafted = dict.fromkeys(names, 0)
    accepted = dict.fromkeys(names, 0)
    chances = dict.fromkeys(names, 0)
    made = 0  # tokens of the current generation
    contexts = np.ones(steps)
    for i in range(steps):
        if beliefs is None:
            world = World(regime.states[state], rng, max_depth=budget + 1)
        else:
            world = BeliefWorld(regime.states[state], rng, budget + 1, beliefs)
        key = (state, world.layout)
        reuse = stateless and beliefs is None and world.cacheable
        step = cache.get(key) if reuse else None
        past = 1 if prompt is None else prompt + made
        contexts[i] = past
        if step is None:
            for s in sources:
                s.world = world
            step = _prepare(shaper.shape([0] * past, sources, budget), world)
            if reuse:
                cache[key] = step
        tree = step.tree
        n = tree.num_nodes
        if beliefs is None and world.cacheable:
            u = rng.random(n)
            choice = step.cand_tokens[np.arange(n), (u[:, None] >= step.cand_cum).sum(axis=1)]  # [n]
        else:  # drawn when the sources first spoke there, or now
            choice = np.array([world.choice(p) for p in step.paths], dtype=np.int64)
        vocab = int(max(step.cand_tokens.max(), tree.tokens.max())) + 1
        logits = torch.zeros(n, vocab)
        logits[torch.arange(n), torch.from_numpy(choice)] = 1.0
        verdict = verifier.verify(tree, logits)
        shaper.record(tree, verdict.accepted)
        lengths[i], values[i], nodes[i] = len(verdict.accepted), step.value, tree.size
        state = regime.next_state(lengths[i])
        if episode is not None:
            lengths[i] = min(lengths[i], episode - made - 1)
            made += 1 + lengths[i]
            if made >= episode:
                shaper, state, made = make_shaper(), 0, 0
        for v in range(1, n):
            drafted[tree.sources[v]] = drafted.get(tree.sources[v], 0) + 1
        walk = (0, *verdict.accepted)
        for j, u_node in enumerate(walk):
            kid_sources = {tree.sources[c] for c in tree.children(u_node)}
            nxt = walk[j + 1] if j + 1 < len(walk) else None
            for src in kid_sources:
                chances[src] = chances.get(src, 0) + 1
            if nxt is not None:
                accepted[tree.sources[nxt]] = accepted.get(tree.sources[nxt], 0) + 1
        if progress is not None:
            progress(1)
    tokens = 1.0 + lengths
    mat = float(tokens.mean())
    half = _half_width(tokens, correlated=len(regime.states) > 1)
    speedup = None
    if cost is not None:
        step_time = np.array([cost_at(cost, 1 + k, c) for k, c in zip(nodes, contexts, strict=True)])
        plain_time = np.array([t * cost_at(cost, 1, c) for t, c in zip(tokens, contexts, strict=True)])
        speedup = float(plain_time.sum() / step_time.sum())
    return SimResult(
        shaper=name or type(shaper).__name__,
        budget=int(budget),
        steps=steps,
        mat=mat,
        ci95=(mat - half, mat + half),
        theory_mat=float(1.0 + values.mean()),
        accept_rate={s: accepted.get(s, 0) / d for s, d in drafted.items() if d},
        accept_per_opportunity={s: accepted.get(s, 0) / c for s, c in chances.items() if c},
        histogram=np.bincount(lengths).tolist(),
        mean_nodes=float(nodes.mean()),
        predicted_speedup=speedup,
    )
