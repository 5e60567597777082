"""A transformers causal LM as the batched loop's :class:`~goose.engine.BatchTarget`.

The cache layout (the choice the batched loop rests on): one ``DynamicCache`` of
growing layers ``[rows, heads, L, dim]`` in which every row is **left-aligned and
compacted after every pass**: row ``b`` holds its committed positions at columns
``0 .. past[b] - 1`` and nothing it reads after them. A pass appends every row's tree
at the same columns ``L .. L + N - 1`` (``L = max(past)``, ``N`` the largest tree);
each row's mask lets its nodes see its own ``past[b]`` columns and their tree
ancestors, never the columns ``past[b] .. L - 1`` (what is left of a longer row's
span) nor another row's pads. After verification each row's root and accepted
nodes are gathered to ``past[b] ..`` (one gather and one scatter per layer for the
whole batch) and the cache is cut to the new ``max(past)``. So the cache is never
longer than the longest row plus one tree, a finished row's memory is freed when it
leaves, and no row ever attends to a position it did not commit. Prefill runs each
distinct prompt alone (its own length, no padding) and stacks the rows into that
layout.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ..engine import BatchTarget
from ..trees import DraftTree
from ..verify import BoundedLogits
from ._cache import new_cache
from ._target import HFTarget, _SdpaGqa

__all__ = ["HFBatchTarget"]


class HFBatchTarget(BatchTarget):
    """A transformers causal LM as a goose :class:`~goose.engine.BatchTarget`: each
    distinct prompt prefilled in a pass of its own (no padding: a batch of ragged
    prompts costs the sum of their lengths, not rows times the longest), stacked into
    the batch cache; a row whose prompt equals the previous row's copies it (best-of-N
    prefills once). Then tree passes over every live row at once. The same architectures and attention implementations as
    :class:`HFTarget`, whose mask conventions and head it reuses.

    Raises:
        ValueError: as :class:`HFTarget` does.
    """

    def __init__(self, model: Any, single: HFTarget | None = None) -> None:
        self.single = HFTarget(model) if single is None else single
        self.model = model
        s = self.single
        self.vocab_size, self.max_positions = s.vocab_size, s.max_positions
        self.argmax_only_logits, self.bounded_logits = s.argmax_only_logits, s.bounded_logits
        self.cache: Any = None
        self.past: list[int] = []
        self._pass: tuple[int, list[int]] | None = None  # (L, nodes per row) of the last pass
        self._hidden: list[torch.Tensor | None] = []  # per row: its prompt's hidden states, until harvested
        self._prompts: list[tuple[int, ...]] = []

    # -- rows in -----------------------------------------------------------------------
    def prefill(self, prompts: Sequence[Sequence[int]]) -> list[torch.Tensor]:
        if self.cache is not None:
            raise RuntimeError("a batch is prefilled once; start a new HFBatchTarget for a new batch")
        for p in prompts:
            if len(p) >= self.max_positions:
                raise ValueError(f"the prompt has {len(p)} tokens; the model's context window is {self.max_positions}")
        rows = [tuple(int(t) for t in p) for p in prompts]
        first = [i for i, r in enumerate(rows) if i == 0 or r != rows[i - 1]]  # distinct runs of equal prompts
        owner = (np.searchsorted(first, np.arange(len(rows)), side="right") - 1).tolist()  # row -> its run
        from transformers import DynamicCache

        s = self.single
        staged, hidden, last = [], [], []
        with torch.inference_mode():
            for i in first:  # one pass per distinct prompt: its own tokens only, no padding
                cache = DynamicCache()  # exact size: copied into the batch cache below
                ids = torch.tensor([rows[i]], device=s.device)
                out = self.model.get_decoder()(input_ids=ids, past_key_values=cache, use_cache=True)
                hidden.append(out.last_hidden_state[0])  # [len, hidden]
                last.append(s.head.logits(out.last_hidden_state[0, -1:])[0])  # [vocab]
                staged.append([[layer.keys, layer.values] for layer in cache.layers])
            self.past = [len(r) for r in rows]
            length = max(self.past)
            self.cache = new_cache()
            for li in range(len(staged[0])):  # layer by layer, each prompt's copy freed once stacked
                k0 = staged[0][li][0]
                keys = k0.new_zeros((len(rows), k0.shape[1], length, k0.shape[3]))
                values = torch.zeros_like(keys)
                for b, u in enumerate(owner):
                    keys[b, :, : self.past[b]] = staged[u][li][0][0]
                    values[b, :, : self.past[b]] = staged[u][li][1][0]
                for u in range(len(staged)):
                    staged[u][li] = None
                self.cache.update(keys, values, li)
                del keys, values
        self._hidden = [hidden[u] for u in owner]
        self._prompts = rows
        return [last[u].clone() for u in owner]

    def prefill_topk(self, row: int, k: int,
                     positions: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray] | None:
        hidden = self._hidden[row] if row < len(self._hidden) else None
        if hidden is None:
            return None
        if positions is not None:
            hidden = hidden[torch.from_numpy(positions).to(hidden.device)]
        self._hidden[row] = None
        head = self.single.head
        return head.seed_topk(hidden, k, head.seed_vocab(self._prompts[row]))

    # -- passes ------------------------------------------------------------------------
    def _mask(self, trees: Sequence[DraftTree], length: int, width: int, window: int | None) -> torch.Tensor:
        """``[rows, 1, width, length + width]``: row ``b``'s nodes see its committed
        columns and their tree ancestors (within the sliding window, if any); a pad
        query sees only itself."""
        allowed = torch.zeros(len(trees), width, length + width, dtype=torch.bool)
        for b, tree in enumerate(trees):
            n, past = tree.num_nodes, self.past[b]
            allowed[b, :n, :past] = True
            allowed[b, :n, length : length + n] = torch.from_numpy(tree.ancestor_mask())
            if window is not None:
                q_pos = torch.from_numpy(tree.position_ids(past))  # [n]
                k_pos = torch.cat([torch.arange(length), q_pos, torch.zeros(width - n, dtype=q_pos.dtype)])
                allowed[b, :n] &= k_pos[None, :] > q_pos[:, None] - window
            pads = torch.arange(n, width)
            allowed[b, pads, length + pads] = True
        allowed = allowed[:, None].to(self.single.device)
        if self.single.attn == "sdpa":
            return allowed
        dtype = self.single.dtype
        return torch.where(allowed, torch.zeros((), dtype=dtype, device=allowed.device), torch.finfo(dtype).min)

    def forward_trees(self, trees: Sequence[DraftTree], argmax_only: Sequence[bool],
                      bounded: Sequence[bool]) -> list[torch.Tensor | BoundedLogits]:
        if self.cache is None:
            raise RuntimeError("forward_trees before prefill")
        self._hidden = []
        if len(trees) != len(self.past):
            raise ValueError(f"got {len(trees)} trees for {len(self.past)} live rows")
        for b, tree in enumerate(trees):
            if self.past[b] + int(tree.depths.max()) >= self.max_positions:
                raise ValueError(f"generation reached the model's context window ({self.max_positions} tokens)")
        s, length = self.single, max(self.past)
        nodes = [t.num_nodes for t in trees]
        width = max(nodes)
        ids = torch.zeros(len(trees), width, dtype=torch.long)
        pos = torch.zeros(len(trees), width, dtype=torch.long)
        for b, tree in enumerate(trees):
            ids[b, : nodes[b]] = torch.from_numpy(tree.tokens)
            pos[b] = self.past[b]
            pos[b, : nodes[b]] = torch.from_numpy(tree.position_ids(self.past[b]))
        if s.mixed:
            mask: Any = {"full_attention": self._mask(trees, length, width, None),
                         "sliding_attention": self._mask(trees, length, width, s.window)}
        else:
            mask = self._mask(trees, length, width, s.window if s.all_sliding else None)
        with torch.inference_mode(), _SdpaGqa(s.attn == "sdpa" and s.grouped_heads):
            out = self.model.get_decoder()(input_ids=ids.to(s.device), position_ids=pos.to(s.device),
                                           attention_mask=mask, past_key_values=self.cache, use_cache=True)
            hidden = out.last_hidden_state  # [rows, width, hidden]
            self._pass = (length, nodes)
            return self._logits(hidden, nodes, argmax_only, bounded)

    def _logits(self, hidden: torch.Tensor, nodes: list[int], argmax_only: Sequence[bool],
                bounded: Sequence[bool]) -> list[torch.Tensor | BoundedLogits]:
        """Each row's logits by the head its verifier reads: rows of one kind in one call."""
        head, out = self.single.head, [None] * len(nodes)
        kinds: dict[str, list[int]] = {}
        for b in range(len(nodes)):
            kind = ("bounded" if bounded[b] and self.bounded_logits
                    else "argmax" if argmax_only[b] and self.argmax_only_logits else "full")
            kinds.setdefault(kind, []).append(b)
        for kind, rows in kinds.items():
            if kind == "bounded":
                for b in rows:
                    out[b] = head.bounded_logits(hidden[b, : nodes[b]])
                continue
            flat = torch.cat([hidden[b, : nodes[b]] for b in rows])
            logits = head.argmax_exact_logits(flat) if kind == "argmax" else head.logits(flat)
            for b, part in zip(rows, torch.split(logits, [nodes[b] for b in rows]), strict=True):
                out[b] = part
        return out  # type: ignore[return-value]

    def commit(self, trees: Sequence[DraftTree], accepted: Sequence[Sequence[int]]) -> None:
        if self._pass is None:
            raise RuntimeError("commit before a tree pass")
        length, _ = self._pass
        rows, src, dst = [], [], []
        for b, acc in enumerate(accepted):
            keep = [length] + [length + int(a) for a in acc]  # the root, then the accepted path
            for j, col in enumerate(keep):
                if col != self.past[b] + j:
                    rows.append(b)
                    src.append(col)
                    dst.append(self.past[b] + j)
            self.past[b] += len(keep)
        if rows:
            device = self.single.device
            r, s, d = (torch.tensor(x, device=device) for x in (rows, src, dst))
            with torch.inference_mode():
                for layer in self.cache.layers:
                    layer.keys[r, :, d] = layer.keys[r, :, s]
                    layer.values[r, :, d] = layer.values[r, :, s]
        drop = self.cache.get_seq_length() - max(self.past)
        if drop > 0:
            self.cache.crop(-drop)
        self._pass = None

    def retire(self, keep: Sequence[int]) -> None:
        keep = list(keep)
        if keep == list(range(len(self.past))):
            return
        self.past = [self.past[i] for i in keep]
        self._hidden = [self._hidden[i] for i in keep] if self._hidden else []
        if not keep:
            self.cache = None
            return
        index = torch.tensor(keep, device=self.single.device)
        with torch.inference_mode():
            for layer in self.cache.layers:
                layer.batch_select_indices(index)
        drop = self.cache.get_seq_length() - max(self.past)
        if drop > 0:
            self.cache.crop(-drop)

    def cache_lengths(self) -> list[int]:
        return list(self.past)

    def rewind(self, n: int) -> None:
        """Drop the last ``n`` positions of every live row (calibration passes)."""
        if n < 0 or n > min(self.past):
            raise ValueError(f"cannot rewind {n} positions of rows of {min(self.past)}")
        self.past = [p - n for p in self.past]
        drop = self.cache.get_seq_length() - max(self.past)
        if drop > 0:
            self.cache.crop(-drop)

    def row_cache(self, b: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Live row ``b``'s committed keys and values per layer, ``[heads, past[b], dim]``
        each (what a test compares with a fresh prefill of the row's tokens)."""
        return [(layer.keys[b, :, : self.past[b]], layer.values[b, :, : self.past[b]]) for layer in self.cache.layers]

