"""Generation on a transformers model: :func:`generate`, :class:`Session`, and goose as
``model.generate(custom_generate=...)``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from ..engine import BatchResult, GenerationRequest, GenerationResult, RowParts, TraceRecorder, check_prompt, decode, decode_batch
from ..methods import Memory, Method
from ..sources import TokenSource
from ..trees import DraftTree, TreeShaper
from ..verify import Sampling, Verdict, Verifier, check_logits, sample_and_match
from ._batch import HFBatchTarget
from ._calibrate import calibrate, calibrate_batch
from ._target import HFTarget

__all__ = ["ProcessorVerifier", "Session", "custom_generate", "encode_prompt", "eos_ids", "generate",
           "generate_batch", "resolve_method"]


def eos_ids(model: Any, eos_token_id: int | Sequence[int] | None) -> list[int]:
    """The EOS ids to stop on: ``eos_token_id`` or the model's generation config's."""
    if eos_token_id is None:
        eos_token_id = getattr(model.generation_config, "eos_token_id", None)
    if eos_token_id is None:
        return []
    return [int(eos_token_id)] if isinstance(eos_token_id, int) else [int(e) for e in eos_token_id]


def encode_prompt(tokenizer: Any, prompt: str, chat: bool) -> list[int]:
    """Token ids of ``prompt``, as a chat turn (with the generation prompt) or raw."""
    if not prompt:
        raise ValueError("the prompt is empty")
    if chat and getattr(tokenizer, "chat_template", None):
        ids = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                            tokenize=True, return_dict=False)
        if isinstance(ids, dict) or hasattr(ids, "input_ids"):
            ids = ids["input_ids"]
        return [int(t) for t in ids]
    return [int(t) for t in tokenizer(prompt)["input_ids"]]


def resolve_method(method: str | Method, budget: int | str | None) -> tuple[Method, int | str | None]:
    """The method and its checked budget from ``"name"``, ``"name@B"`` or a
    :class:`Method`, and a separate ``budget`` (which ``@B`` may not contradict)."""
    request = GenerationRequest(method, budget)
    return request.method, request.budget  # type: ignore[return-value]


def _cost_curve(model: Any, request: GenerationRequest) -> Any:
    """The measured (cached) cost curve of the passes ``request`` runs, under ``auto``."""
    if not request.auto:
        return None
    argmax_only, bounded = request.cost_kind
    return calibrate(model, argmax_only=argmax_only, bounded=bounded)


def _prompt_ids(prompt: str | Sequence[int] | torch.Tensor, tokenizer: Any, chat: bool) -> list[int]:
    if isinstance(prompt, str):
        if tokenizer is None:
            raise ValueError("a text prompt needs a tokenizer (or pass token ids)")
        return encode_prompt(tokenizer, prompt, chat)
    if isinstance(prompt, torch.Tensor):
        if prompt.dim() > 2 or (prompt.dim() == 2 and prompt.shape[0] != 1):
            raise ValueError(f"a prompt tensor must be one row of ids ([n] or [1, n]), got shape {tuple(prompt.shape)}")
        if prompt.is_floating_point() or prompt.is_complex() or prompt.dtype == torch.bool:
            raise ValueError(f"prompt ids must be integers, got a {prompt.dtype} tensor")
        prompt = prompt.reshape(-1).tolist()
    elif len(prompt) and isinstance(prompt[0], (list, tuple)):
        if len(prompt) != 1:
            raise ValueError(f"got {len(prompt)} rows of prompt ids where one prompt was expected "
                             "(generate_batch takes many)")
        prompt = prompt[0]
    if len(prompt) == 0:
        raise ValueError("the prompt is empty")
    return list(prompt)


def _many_prompts(prompt: Any) -> list[Any] | None:
    """The prompts of a batch (a list of texts, several rows of ids, a tensor of several
    rows), or ``None`` for one prompt (text, ids, or a single row ``[[...]]``/``[1, n]``)."""
    if isinstance(prompt, torch.Tensor):
        return list(prompt) if prompt.dim() == 2 and prompt.shape[0] > 1 else None
    if isinstance(prompt, str) or not isinstance(prompt, (list, tuple)) or not prompt:
        return None
    if all(isinstance(p, str) for p in prompt):
        return list(prompt)
    if isinstance(prompt[0], (list, tuple, torch.Tensor)) and len(prompt) > 1:
        return list(prompt)
    return None


def generate(
    model: Any,
    prompt: str | Sequence[int] | torch.Tensor,
    tokenizer: Any = None,
    method: str | Method = "goose",
    budget: int | str | None = None,
    max_new_tokens: int = 128,
    temperature: float = 0.0,
    top_k: int = 0,
    top_p: float = 1.0,
    seed: int = 0,
    chat: bool = False,
    eos_token_id: int | Sequence[int] | None = None,
    sources: Sequence[TokenSource] | None = None,
    shaper: TreeShaper | None = None,
    verifier: Verifier | str | None = None,
    on_commit: Callable[[list[int], list[str]], None] | None = None,
    recorder: Callable[[dict], None] | None = None,
    trace: str | Path | None = None,
    target: HFTarget | None = None,
    label: str | None = None,
    memory: Memory | None = None,
    warmup: bool = False,
) -> GenerationResult:
    """Speculative generation with a method (by name, ``name@B``, a dotted path
    ``package.module:factory``, or a :class:`~goose.methods.Method`) or explicit
    strategy objects.

    Args:
        model: a transformers causal LM (sdpa or eager attention; batch 1).
        prompt: text (needs ``tokenizer``) or token ids.
        method: see ``goose.methods.METHODS``; ``sources``/``shaper`` override its parts.
        budget: draft nodes per step (default: the method's), or ``"auto"``: each step
            keeps the tree size that maximises predicted tokens per second under the
            model's measured cost curve (:func:`calibrate`, cached).
        temperature: 0 = greedy (token-identical to ``model.generate``); > 0 samples
            losslessly with ``top_k``/``top_p``, seeded by ``seed`` (the verifier's
            draws, and a stochastic drafter's).
        verifier: a :class:`~goose.verify.Verifier`, or by name (``goose.verify.VERIFIERS``:
            ``"match"``, ``"rrs"``, ``"traversal"``), or ``None``/``"auto"``: greedy at
            temperature 0, else Traversal Verification for a method that draws its
            children from q and sample-and-match for one that does not.
        chat: wrap a text prompt in the tokenizer's chat template.
        trace: write a replay trace (JSONL, ``sim.replay``) of this run here.
        target: reuse this :class:`HFTarget` of ``model`` (and its derived copies).
        label: the column or session label the method factory is told
            (:class:`~goose.methods.MethodContext`).
        memory: the caller's :class:`~goose.methods.Memory`; it reaches only a
            cross-request method.
        warmup: tells the factory the call only warms caches up.

    Returns:
        :class:`~goose.engine.GenerationResult` with ``tokens``, ``text``, ``stats``; for
        several prompts (a list of texts, several rows of ids) the
        :class:`~goose.engine.BatchResult` of :func:`generate_batch`.

    Example (not run here: it loads a model)::

        model, tok = goose.load_model("smollm2")
        out = goose.generate(model, "def fib(n):", tokenizer=tok, max_new_tokens=64)
        print(out.text, out.stats.mat)
    """
    many = _many_prompts(prompt)
    if many is not None:
        if any(x is not None for x in (on_commit, recorder, trace)) or warmup:
            raise ValueError("on_commit, recorder, trace and warmup are for one prompt; generate_batch runs many")
        return generate_batch(model, many, tokenizer=tokenizer, method=method, budget=budget,  # type: ignore[return-value]
                              max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                              seed=seed, chat=chat, eos_token_id=eos_token_id, sources=sources, shaper=shaper,
                              verifier=verifier, target=target, label=label, memory=memory)
    request = GenerationRequest(method, budget, Sampling(temperature, top_k, top_p, seed), max_new_tokens,
                                verifier, sources, shaper)
    ids = _prompt_ids(prompt, tokenizer, chat)
    if trace is not None and recorder is not None:
        raise ValueError("pass either recorder or trace, not both")
    target = target or HFTarget(model)
    cost = _cost_curve(model, request)
    plan = request.plan(cost, target=target, vocab_size=target.vocab_size, label=label, memory=memory, warmup=warmup)
    use_sources, tracer = plan.sources, None
    if trace is not None:
        tracer = TraceRecorder()
        use_sources, recorder = tracer.wrap(use_sources), tracer.step
    result = decode(target, ids, use_sources, plan.shaper, plan.verifier, plan.budget, plan.max_new_tokens,
                    eos_ids(model, eos_token_id), on_commit=on_commit, recorder=recorder)
    if tracer is not None:
        tracer.write(trace, ids, result.tokens, plan.method.name, plan.budget, result.stats.forward_calls,
                     [s.name for s in use_sources], requested=request.budget,
                     cost_curve=None if cost is None else cost.to_json(), max_new_tokens=plan.max_new_tokens)
    if tokenizer is not None:
        result.text = tokenizer.decode(result.tokens, skip_special_tokens=True)
    return result


def generate_batch(
    model: Any,
    prompts: Sequence[str | Sequence[int]] | torch.Tensor,
    tokenizer: Any = None,
    method: str | Method = "goose",
    budget: int | str | None = None,
    max_new_tokens: int = 128,
    n: int = 1,
    temperature: float = 0.0,
    top_k: int = 0,
    top_p: float = 1.0,
    seed: int = 0,
    chat: bool = False,
    eos_token_id: int | Sequence[int] | None = None,
    sources: Sequence[TokenSource] | None = None,
    shaper: TreeShaper | None = None,
    verifier: Verifier | str | None = None,
    target: HFTarget | None = None,
    label: str | None = None,
    memory: Memory | None = None,
) -> BatchResult:
    """Speculative generation of several sequences at once (:func:`~goose.engine.decode_batch`):
    each row drafts its own tree with its own method instance, and all trees go through
    one target pass a step. Per row, the output is what :func:`generate` gives for that
    prompt (greedy: the same tokens; sampling: the same law). Arguments not listed here
    mean what they mean for :func:`generate`; ``sources`` and ``shaper`` objects would be
    shared by every row (and their state with them), so they are taken for a batch of
    one only.

    Args:
        prompts: texts (need ``tokenizer``) or rows of ids, of any lengths.
        n: samples per prompt (best-of-N): the rows of one prompt share its prefill
            (the cache is copied, not recomputed). Rows are ordered prompt by prompt.
        seed: row ``i`` (counting every sample) draws with seed ``seed + i``.
        memory: the :class:`~goose.methods.Memory` a cross-request method keeps; by
            default one fresh memory for the whole batch, so that such a method's rows
            share it and **learn from each other** (``stand-shared``: one STAND table for
            all N samples). Other methods never see it.
        budget: as :func:`generate`; ``"auto"`` here is batch-aware: each row drafts at
            its method's default budget, and every step cuts all trees to the one width
            that maximises the batch's predicted tokens per second under the batched
            cost curve (:func:`calibrate_batch`, measured once and cached;
            :func:`~goose.engine.cut_batch`).

    Returns:
        :class:`~goose.engine.BatchResult`: one result per row (``text`` decoded when a
        tokenizer is given), with the batch's throughput and pooled MAT.
    """
    if isinstance(prompts, torch.Tensor):
        prompts = list(prompts)
    if isinstance(prompts, str) or not isinstance(prompts, (list, tuple)) or not prompts:
        raise ValueError("generate_batch takes a non-empty list of prompts")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n (samples per prompt) must be an integer >= 1, got {n!r}")
    ids = [check_prompt(_prompt_ids(p, tokenizer, chat), None, None) for p in prompts]  # before the model is used
    rows = [p for p in ids for _ in range(n)]
    if (sources is not None or shaper is not None) and len(rows) > 1:
        raise ValueError("sources/shaper objects would be shared by every row of the batch: pass a method instead")
    requests = [GenerationRequest(method, budget, Sampling(temperature, top_k, top_p, seed + i), max_new_tokens,
                                  verifier, sources, shaper) for i in range(len(rows))]
    batch_cost = None
    if requests[0].auto and len(rows) > 1:  # batch-aware auto: rows draft at the method's budget, one cut for all
        curve = calibrate_batch(model, argmax_only=requests[0].cost_kind[0])
        requests = [GenerationRequest(r.method, None, r.sampling, r.max_new_tokens, r.verifier, r.sources, r.shaper)
                    for r in requests]

        def batch_cost(n_rows: int, width: int) -> float:
            return curve(width, context=n_rows)
    single = target or HFTarget(model)
    memory = Memory() if memory is None else memory
    if len(rows) == 1:  # a batch of one is one sequence: the single-sequence loop, at its speed
        one = generate(model, rows[0], tokenizer=tokenizer, method=method, budget=budget,
                       max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p, seed=seed,
                       eos_token_id=eos_token_id, sources=sources, shaper=shaper, verifier=verifier, target=single,
                       label=label, memory=memory)
        return BatchResult([one], one.stats.forward_calls, one.stats.time_total, one.stats.steps, [1] * one.stats.steps)
    batch = HFBatchTarget(model, single)
    cost = _cost_curve(model, requests[0])
    parts = []
    for row, request in zip(rows, requests, strict=True):
        plan = request.plan(cost, target=single, vocab_size=single.vocab_size, label=label, memory=memory)
        parts.append(RowParts(row, plan.sources, plan.shaper, plan.verifier, plan.budget, plan.max_new_tokens))
    result = decode_batch(batch, parts, eos_ids(model, eos_token_id), batch_cost=batch_cost)
    if tokenizer is not None:
        for r in result:
            r.text = tokenizer.decode(r.tokens, skip_special_tokens=True)
    return result


class Session:
    """Generations on one model that share its :class:`HFTarget` (and the copies it
    derives from the weights) and, for cross-request methods, one
    :class:`~goose.methods.Memory` per method label, owned here. ``reuse_prompt``: a
    generation from the same prompt tokens as the last one skips the prefill
    (:class:`HFTarget`), for many samples of one prompt.

    Example (not run here: it loads a model)::

        session = goose.Session(*goose.load_model("smollm2"))
        for q in questions:
            print(session.generate(q, method="goose", budget="auto", chat=True).text)
    """

    def __init__(self, model: Any, tokenizer: Any = None, reuse_prompt: bool = False) -> None:
        self.model, self.tokenizer = model, tokenizer
        self.target = HFTarget(model, reuse_prompt=reuse_prompt)
        self.memories: dict[str, Memory] = {}

    def generate(self, prompt: str | Sequence[int], method: str | Method = "goose", **kwargs: Any) -> GenerationResult:
        """:func:`generate` on this session's model, target and memories."""
        label = kwargs.pop("label", None) or (method if isinstance(method, str) else method.name)
        kwargs.setdefault("tokenizer", self.tokenizer)
        memory = kwargs.pop("memory", None)
        if memory is None:  # an empty Memory of the caller's is still the caller's (bool(Memory()) is False)
            memory = self.memories.setdefault(label, Memory())
        return generate(self.model, prompt, method=method, target=self.target, label=label, memory=memory, **kwargs)

    def generate_batch(self, prompts: Sequence[str | Sequence[int]], method: str | Method = "goose",
                       n: int = 1, **kwargs: Any) -> BatchResult:
        """:func:`generate_batch` on this session's model and target; a cross-request
        method's rows share this session's memory for the method's label."""
        label = kwargs.pop("label", None) or (method if isinstance(method, str) else method.name)
        kwargs.setdefault("tokenizer", self.tokenizer)
        memory = kwargs.pop("memory", None)
        if memory is None:
            memory = self.memories.setdefault(label, Memory())
        return generate_batch(self.model, prompts, method=method, n=n, target=self.target, label=label,
                              memory=memory, **kwargs)


# -- model.generate(..., custom_generate=goose.hf.custom_generate) ----------------------------
class ProcessorVerifier(Verifier):
    """Applies transformers logits processors to each visited node's logits, with the
    node's own path as history (committed tokens + path), then takes the argmax
    (greedy) or one sample (``do_sample``): lossless for any processor list, including
    path-dependent ones such as repetition penalties."""

    def __init__(self, processors: Any, prompt: Sequence[int], do_sample: bool,
                 generator: torch.Generator | None = None) -> None:
        self.processors = processors
        self.committed = [int(t) for t in prompt]
        self.do_sample = do_sample
        self.generator = generator if generator is not None else torch.Generator().manual_seed(0)

    def extend(self, tokens: list[int], kinds: list[str] | None = None) -> None:
        """Keep the committed history in step with the decode loop (its on_commit hook)."""
        self.committed.extend(tokens)

    def verify(self, tree: DraftTree, logits: torch.Tensor) -> Verdict:
        check_logits(tree, logits)

        def draw(node: int) -> int:
            history = self.committed + [int(tree.tokens[u]) for u in tree.path_to(node)]
            ids = torch.tensor([history], device=logits.device)
            scores = self.processors(ids, logits[node : node + 1].float())  # [1, vocab]
            if not self.do_sample:
                return int(scores[0].argmax())
            probs = scores[0].softmax(-1).cpu()
            return int(torch.multinomial(probs, 1, generator=self.generator))

        return sample_and_match(tree, draw)


def custom_generate(
    model: Any,
    input_ids: torch.Tensor,
    logits_processor: Any,
    stopping_criteria: Any,
    generation_config: Any,
    synced_gpus: bool = False,
    streamer: Any = None,
    goose_method: str = "goose",
    goose_budget: int | str | None = None,
    goose_seed: int = 0,
    **model_kwargs: Any,
) -> torch.Tensor:
    """goose as transformers' decoding loop: ``model.generate(input_ids, max_new_tokens=...,
    custom_generate=goose.hf.custom_generate, goose_method="goose")``.

    The usual kwargs work (``max_new_tokens``, ``do_sample``, ``temperature``,
    ``top_k``, ``top_p``, ``repetition_penalty``, ``eos_token_id``, a
    ``logits_processor`` list, a ``streamer``): processors are applied per tree node with
    that node's own path. Batch size 1; returns the prompt followed by the new
    tokens (``return_dict_in_generate`` is not supported). Stops on EOS and on the
    length limit; other stopping criteria are not consulted.
    """
    if input_ids.shape[0] != 1:
        raise ValueError("goose decodes one sequence at a time (batch size 1)")
    prompt = input_ids[0].tolist()
    max_new = int(generation_config.max_length) - len(prompt)
    if getattr(generation_config, "max_new_tokens", None):
        max_new = int(generation_config.max_new_tokens)
    verifier = ProcessorVerifier(logits_processor, prompt, bool(generation_config.do_sample),
                                 torch.Generator().manual_seed(goose_seed))
    request = GenerationRequest(goose_method, goose_budget, max_new_tokens=max_new, verifier=verifier)
    target = HFTarget(model)
    plan = request.plan(_cost_curve(model, request), target=target,
                        vocab_size=target.vocab_size)

    def on_commit(tokens: list[int], kinds: list[str]) -> None:
        verifier.extend(tokens)
        if streamer is not None:
            streamer.put(torch.tensor(tokens))

    if streamer is not None:
        streamer.put(input_ids.cpu())
    result = decode(target, prompt, plan.sources, plan.shaper, plan.verifier, plan.budget, plan.max_new_tokens,
                    eos_ids(model, generation_config.eos_token_id), on_commit=on_commit)
    if streamer is not None:
        streamer.end()
    return torch.cat([input_ids, torch.tensor([result.tokens], device=input_ids.device)], dim=1)
