"""A transformers causal LM as the decode loop's :class:`~goose.engine.Target`."""

from __future__ import annotations

import copy
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ..engine import Target
from ..sources import TokenSource
from ..trees import DraftTree
from ..verify import BoundedLogits
from ._cache import new_cache
from ._draft import DraftModelSource
from ._head import VerifyHead

__all__ = ["SUPPORTED_ARCHITECTURES", "SUPPORTED_ATTENTION", "HFTarget"]

SUPPORTED_ARCHITECTURES = ("llama", "mistral", "qwen2", "gemma3_text")
"""``config.model_type`` values goose runs exactly; any other architecture is refused."""
SUPPORTED_ATTENTION = ("sdpa", "eager")


class HFTarget(Target):
    """A transformers causal LM as a goose :class:`~goose.engine.Target` (batch 1).

    Tree verification passes run on the model's decoder with its own ``DynamicCache``:
    explicit position ids (past + depth), a 4D ancestor mask in the format of the
    attention implementation (bool for sdpa, additive for eager), sliding windows
    encoded per node, and KV compaction to the accepted path. The vocabulary
    projection and its derived copies live in :attr:`head` (:class:`VerifyHead`).

    With ``reuse_prompt``, a prefill of the same tokens as the last one crops the cache
    back to the prompt instead of running the model again (many samples from one prompt).
    Off by default, so benchmarks time every prefill.

    Raises:
        ValueError: for an attention implementation other than sdpa/eager (flash
            attention ignores custom masks), or an architecture goose cannot run
            exactly.
    """

    def __init__(self, model: Any, reuse_prompt: bool = False) -> None:
        cfg = model.config
        attn = getattr(cfg, "_attn_implementation", None) or "eager"
        if attn not in SUPPORTED_ATTENTION:
            raise ValueError(
                f"attention implementation {attn!r} is not supported: tree verification needs an arbitrary "
                f"4D mask; load the model with attn_implementation='sdpa' or 'eager'"
            )
        model_type = getattr(cfg, "model_type", "?")
        if model_type not in SUPPORTED_ARCHITECTURES:
            raise ValueError(
                f"architecture {model_type!r} is not supported (goose runs {', '.join(SUPPORTED_ARCHITECTURES)} "
                "exactly; others are refused rather than run wrongly)"
            )
        self.model = model
        self.attn = attn
        self.grouped_heads = True  # sdpa tree passes read grouped K/V heads as they are (see _SdpaGqa)
        self.max_positions: int | None = int(getattr(cfg, "max_position_embeddings", 1 << 30))
        self.vocab_size: int | None = int(model.get_input_embeddings().num_embeddings)
        layer_types = list(getattr(cfg, "layer_types", None) or [])
        window = getattr(cfg, "sliding_window", None)
        if model_type == "qwen2" and not getattr(cfg, "use_sliding_window", False):
            window = None
        self.window = int(window) if window else None
        self.mixed = self.window is not None and "sliding_attention" in layer_types and "full_attention" in layer_types
        self.all_sliding = self.window is not None and not self.mixed
        self.device = next(model.parameters()).device
        self.dtype = next(model.parameters()).dtype
        self.head = VerifyHead(model)
        self.argmax_only_logits = self.head.bf16
        self.bounded_logits = self.head.bounds
        self.cache: Any = None
        self.past = 0
        self._hidden: torch.Tensor | None = None
        self._prefilled: tuple[int, ...] = ()  # the last prefill's prompt: its seeding's candidates
        self.reuse_prompt = bool(reuse_prompt)
        self._prompt: tuple[tuple[int, ...], torch.Tensor, torch.Tensor] | None = None  # tokens, logits, hidden
        self._copies: dict[torch.dtype, Any] = {}  # low-precision copies of the model (drafts)

    def repack(self) -> None:
        """Drop every copy derived from the weights (this target's head copy and the
        model's packed linear layers); the next pass derives them afresh. Needed only
        after changes through ``weight.data`` (other in-place changes are seen)."""
        self.head.repack()
        self._copies.clear()
        for m in self.model.modules():
            if hasattr(m, "repack") and m is not self.model:
                m.repack()

    def draft_source(self, name: str = "bf16", dtype: torch.dtype = torch.bfloat16) -> TokenSource:
        """A :class:`DraftModelSource` drafting with this target's ``dtype`` copy
        (:meth:`low_precision_copy`): how a method factory reaches a draft model, through
        its context (``ctx.target.draft_source()``), without importing ``goose.hf``."""
        return DraftModelSource(self.low_precision_copy(dtype), name=name)

    def low_precision_copy(self, dtype: torch.dtype = torch.bfloat16) -> Any:
        """A ``dtype`` copy of the model on its device, made on first use and kept with this
        target (a :class:`Session` and a bench column keep one target): the draft model of
        the ``bf16-draft`` method. Training-free: the target's own weights, rounded. After
        an in-place change of the weights call :meth:`repack`, or the draft drifts from the
        target (which costs acceptance, never exactness)."""
        if dtype not in self._copies:
            self._copies[dtype] = copy.deepcopy(self.model).to(dtype).eval()
        return self._copies[dtype]

    def _mask(self, tree: DraftTree, window: int | None) -> torch.Tensor:
        n, past = tree.num_nodes, self.past
        allowed = torch.ones(n, past + n, dtype=torch.bool)  # [n, past + n]
        allowed[:, past:] = torch.from_numpy(tree.ancestor_mask())
        if window is not None:
            q_pos = torch.from_numpy(tree.position_ids(past))  # [n]
            k_pos = torch.cat([torch.arange(past), q_pos])  # [past + n]
            allowed &= k_pos[None, :] > q_pos[:, None] - window
        allowed = allowed[None, None].to(self.device)  # [1, 1, n, past + n]
        if self.attn == "sdpa":
            return allowed
        zero = torch.zeros((), dtype=self.dtype, device=self.device)
        return torch.where(allowed, zero, torch.finfo(self.dtype).min)

    # -- Target protocol -------------------------------------------------------------
    def prefill(self, prompt: Sequence[int]) -> torch.Tensor:
        if len(prompt) >= self.max_positions:
            raise ValueError(
                f"the prompt has {len(prompt)} tokens; the model's context window is {self.max_positions}"
            )
        key = tuple(int(t) for t in prompt)
        if self.reuse_prompt and self.cache is not None and self._prompt is not None and self._prompt[0] == key:
            # positions before the prompt's end are never rewritten by a generation: crop back to them
            if self.cache_length() > len(key):
                self.cache.crop(len(key) - self.cache_length())
            self.past, self._hidden, self._prefilled = len(key), self._prompt[2], key
            return self._prompt[1].clone()
        self.cache = new_cache()
        ids = torch.tensor([list(prompt)], device=self.device)
        with torch.inference_mode():
            out = self.model.get_decoder()(input_ids=ids, past_key_values=self.cache, use_cache=True)
            hidden = out.last_hidden_state[0]  # [len, hidden]
            self._hidden, self._prefilled = hidden, key
            logits = self.head.logits(hidden[-1:])[0]  # [vocab]
        self.past = len(prompt)
        self._prompt = (key, logits.clone(), hidden) if self.reuse_prompt else None
        return logits

    def prefill_topk(self, k: int, positions: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray] | None:
        if self._hidden is None:
            return None
        hidden = self._hidden if positions is None else self._hidden[torch.from_numpy(positions).to(self.device)]
        self._hidden = None
        return self.head.seed_topk(hidden, k, self.head.seed_vocab(self._prefilled))

    def forward_tree(self, tree: DraftTree, argmax_only: bool = False,
                     bounded: bool = False) -> torch.Tensor | BoundedLogits:
        if self.past + int(tree.depths.max()) >= self.max_positions:
            raise ValueError(f"generation reached the model's context window ({self.max_positions} tokens)")
        ids = torch.from_numpy(tree.tokens)[None].to(self.device)  # [1, n]
        pos = torch.from_numpy(tree.position_ids(self.past))[None].to(self.device)  # [1, n]
        if self.mixed:
            mask: Any = {"full_attention": self._mask(tree, None), "sliding_attention": self._mask(tree, self.window)}
        else:
            mask = self._mask(tree, self.window if self.all_sliding else None)
        with torch.inference_mode(), _SdpaGqa(self.attn == "sdpa" and self.grouped_heads):
            out = self.model.get_decoder()(input_ids=ids, position_ids=pos, attention_mask=mask,
                                           past_key_values=self.cache, use_cache=True)
            hidden = out.last_hidden_state[0]  # [n, hidden]
            if argmax_only and self.argmax_only_logits:
                return self.head.argmax_exact_logits(hidden)
            if bounded and self.bounded_logits:
                return self.head.bounded_logits(hidden)
            return self.head.logits(hidden)  # [n, vocab]

    def commit(self, tree: DraftTree, accepted: Sequence[int]) -> None:
        n, k, start = tree.num_nodes, len(accepted), self.past + 1
        if list(accepted) != list(range(1, k + 1)):  # not a prefix of the flattened tree: gather
            src = torch.tensor([self.past + a for a in accepted], device=self.device)
            with torch.inference_mode():
                for layer in self.cache.layers:
                    layer.keys[..., start : start + k, :] = layer.keys.index_select(-2, src)
                    layer.values[..., start : start + k, :] = layer.values.index_select(-2, src)
        drop = n - 1 - k
        if drop > 0:
            self.cache.crop(-drop)
        self.past += 1 + k

    def rewind(self, n: int) -> None:
        if n < 0 or n > self.past:
            raise ValueError(f"cannot rewind {n} positions of a cache of {self.past}")
        if n:
            self.cache.crop(-n)
            self.past -= n

    def cache_length(self) -> int:
        return int(self.cache.get_seq_length()) if self.cache is not None else 0


class _SdpaGqa:
    """Within the block, transformers' sdpa attention passes grouped key/value heads
    to torch's kernel as they are (``enable_gqa``) even with a mask; by default it
    first copies them to one per query head (``repeat_kv``) whenever a mask is given,
    a copy of the whole cache per layer per tree pass."""

    KEY = "TRANSFORMERS_SDPA_FORCE_GQA"

    def __init__(self, on: bool) -> None:
        self.on = on

    def __enter__(self) -> None:
        if self.on:
            self.saved = os.environ.get(self.KEY)
            os.environ[self.KEY] = "1"

    def __exit__(self, *_: object) -> None:
        if self.on:
            if self.saved is None:
                os.environ.pop(self.KEY, None)
            else:
                os.environ[self.KEY] = self.saved
