"""One generation's plan: a request (method, budget, sampling, verifier, token limit)
validated once, then turned into the parts :func:`decode` runs: sources, shaper,
verifier and node budget.

Every caller builds its generation here: :func:`goose.hf.generate`, ``Session``,
``custom_generate``, ``goose bench`` (through ``generate``), the simulator and trace
replay, and the conformance check :func:`goose.testing.check_method`. A
:class:`GenerationRequest` needs no model, so the command line builds one, and so
refuses bad options, before it loads anything.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..methods import Memory, Method, parse_method
from ..sources import TokenSource
from ..trees import MAX_NODE_BUDGET, TreeShaper, check_budget
from ..verify import GREEDY, VERIFIERS, Sampling, Verifier, check_verifier_name, lossy_verifier, select_verifier

__all__ = ["LOGITS_MEMORY_BYTES", "GenerationPlan", "GenerationRequest", "node_ceiling"]

LOGITS_MEMORY_BYTES = 256 * 2**20
"""The most memory one tree pass may spend on its float32 logits ``[1 + budget, vocab]``:
with :data:`~goose.trees.MAX_NODE_BUDGET` it sets the node ceiling of a target."""

def node_ceiling(vocab_size: int | None) -> int:
    """The largest node budget goose runs on a target with this vocabulary: at most
    :data:`~goose.trees.MAX_NODE_BUDGET`, and few enough nodes that the pass's float32
    logits fit in :data:`LOGITS_MEMORY_BYTES`. (Trees that would outgrow the context
    window are cut to fit each step by the decode loop.)"""
    if not vocab_size:
        return MAX_NODE_BUDGET
    return max(1, min(MAX_NODE_BUDGET, LOGITS_MEMORY_BYTES // (4 * int(vocab_size)) - 1))


@dataclass(frozen=True)
class GenerationRequest:
    """What one generation asks for, checked here and trusted after.

    Args:
        method: a :class:`~goose.methods.Method`, or its spec: a registered name,
            ``"name@B"`` (B an integer or ``auto``) or ``package.module:factory``.
        budget: draft nodes per step (an integer in ``[1, MAX_NODE_BUDGET]``), ``"auto"``
            (the measured cost curve cuts each tree) or ``None`` (the method's default).
            ``"name@B"`` and ``budget`` may not disagree.
        sampling: temperature, top-k, top-p and seed (:class:`~goose.verify.Sampling`).
        max_new_tokens: the most tokens to generate, an integer >= 1.
        verifier: a :class:`~goose.verify.Verifier`, a name of
            :data:`~goose.verify.VERIFIERS`, or ``None``/``"auto"`` (greedy at
            temperature 0; otherwise Traversal for trees drawn from ``q``, else
            sample-and-match), or, at temperature 0 and only when asked, a **lossy**
            one by name (``"loose"``, :data:`~goose.verify.LOSSY_VERIFIERS`).
        sources: token sources that replace the method's own.
        shaper: a tree shaper that replaces the method's own.

    After construction ``method`` is the :class:`~goose.methods.Method` and ``budget``
    the checked request (``@B`` folded in).

    Raises:
        ValueError: naming the culprit, for any of the above out of range, an unknown
            method or verifier, or a sampling verifier at temperature 0.
    """

    method: Method | str = "goose"
    budget: int | str | None = None
    sampling: Sampling = GREEDY
    max_new_tokens: int = 128
    verifier: Verifier | str | None = None
    sources: Sequence[TokenSource] | None = None
    shaper: TreeShaper | None = None

    def __post_init__(self) -> None:
        spec = self.method
        method, at = (spec, None) if isinstance(spec, Method) else parse_method(spec)
        budget = self.budget
        if budget is not None:
            budget = method.parse_budget(budget)
            if at is not None and budget != at:
                raise ValueError(f"{spec!r} names budget {at}, but budget={self.budget!r} was passed too")
        object.__setattr__(self, "method", method)
        object.__setattr__(self, "budget", at if budget is None else budget)
        if not isinstance(self.sampling, Sampling):
            raise ValueError(f"sampling must be a goose.verify.Sampling, got {type(self.sampling).__name__}")
        n = self.max_new_tokens
        if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
            raise ValueError(f"max_new_tokens must be an integer >= 1, got {n!r}")
        object.__setattr__(self, "max_new_tokens", int(n))
        if not isinstance(self.verifier, Verifier):
            check_verifier_name(self.verifier)
        if self.verifier in VERIFIERS and self.sampling.greedy:
            raise ValueError(f"verifier {self.verifier!r} samples: it needs temperature > 0 (0 is greedy)")
        if lossy_verifier(self.verifier) is not None and not self.sampling.greedy:
            raise ValueError(f"verifier {self.verifier!r} loosens greedy verification (lossy): it needs "
                             "temperature 0")
        if self.sources is not None:
            bad = [type(s).__name__ for s in self.sources if not isinstance(s, TokenSource)]
            if bad:
                raise ValueError(f"sources must be TokenSource objects, got {', '.join(bad)}")
            object.__setattr__(self, "sources", list(self.sources))
        if self.shaper is not None and not isinstance(self.shaper, TreeShaper):
            raise ValueError(f"shaper must be a TreeShaper, got {type(self.shaper).__name__}")

    @property
    def auto(self) -> bool:
        """Whether the budget is ``auto`` (a cost curve is needed)."""
        return self.budget == "auto"

    @property
    def cost_kind(self) -> tuple[bool, bool]:
        """``(argmax_only, bounded)``: which passes the cost curve must time. Greedy
        verification reads only each row's argmax; sample-and-match can read bounded
        logits; a verifier that reads ``q`` needs every row exact."""
        named = self.verifier if isinstance(self.verifier, Verifier) else lossy_verifier(self.verifier)
        if named is not None:
            return bool(named.argmax_only), bool(named.reads_bounds)
        greedy = self.sampling.greedy
        return greedy, not greedy and self.verifier in (None, "auto", "match")

    def plan(self, cost: Callable[..., float] | None = None, *, target: Any = None,
             vocab_size: int | None = None, label: str | None = None, memory: Memory | None = None,
             warmup: bool = False) -> GenerationPlan:
        """The parts of one generation.

        Args:
            cost: under ``auto``, the forward cost curve ``c(n)`` of the passes this
                request runs (:attr:`cost_kind` says which: ``goose.hf.calibrate``
                measures them); unused otherwise.
            target: the generation's target, which a method that drafts with a model
                derived from it reads (:attr:`MethodContext.target`).
            vocab_size: the target's vocabulary, which sets the node ceiling
                (:func:`node_ceiling`).
            label: the column or session label the method factory is told
                (:class:`~goose.methods.MethodContext`).
            memory: the caller's memory, handed to a cross-request method only.
            warmup: the generation only warms caches up.
        """
        method: Method = self.method  # type: ignore[assignment]
        curve = None
        if self.auto:
            if cost is None:
                raise ValueError(f"{label or method.name}: budget 'auto' needs the forward cost curve "
                                 "(goose calibrate)")
            curve = cost
        ctx = method.context(label, self.budget, warmup, memory, self.sampling.temperature, self.sampling.seed,
                             target)
        drafting = method.build(ctx)
        if self.sources is not None or self.shaper is not None:
            drafting = type(drafting)(self.sources if self.sources is not None else drafting.sources,
                                      self.shaper or drafting.shaper, drafting.budget)
        if curve is not None:
            drafting = drafting.cut_by(curve)
        ceiling = node_ceiling(vocab_size)
        if drafting.budget > ceiling:
            raise ValueError(f"budget {drafting.budget} of {ctx.label!r} is above this target's ceiling of {ceiling} "
                             f"draft nodes a step (vocabulary {vocab_size}): a larger tree pass costs more than "
                             "it can gain; pass a smaller budget or 'auto'")
        verifier = self.verifier
        if not isinstance(verifier, Verifier):
            verifier = select_verifier(verifier, drafting.shaper.draws_from_q, sampling=self.sampling)
        elif drafting.shaper.draws_from_q and not verifier.reads_q:
            raise ValueError(f"{ctx.label!r} draws its children from q, and {type(verifier).__name__} does not read q: "
                             "it would not be lossless; pass a verifier that reads q (rrs, traversal)")
        return GenerationPlan(self, ctx.label, drafting.sources, drafting.shaper, verifier, drafting.budget, curve)



@dataclass
class GenerationPlan:
    """The parts of one generation, ready for :func:`~goose.engine.decode`.

    Attributes:
        request: the validated request it came from.
        label: the method's label (a bench column, a session's method).
        sources, shaper, verifier: fresh parts for this generation only (under ``auto``
            the shaper is wrapped in :class:`~goose.trees.AutoBudgetShaper`).
        budget: draft nodes per step (the most any tree may have).
        cost: the cost curve ``auto`` cuts by, ``None`` for a fixed budget.
    """

    request: GenerationRequest
    label: str
    sources: list[TokenSource]
    shaper: TreeShaper
    verifier: Verifier
    budget: int
    cost: Callable[..., float] | None = None

    def __post_init__(self) -> None:
        self.budget = check_budget(self.budget)

    @property
    def method(self) -> Method:
        return self.request.method  # type: ignore[return-value]

    @property
    def max_new_tokens(self) -> int:
        return self.request.max_new_tokens
