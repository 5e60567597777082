"""The KV cache layer goose's tree passes append to."""

from __future__ import annotations

import functools
from typing import Any

import torch

__all__ = ["growing_layer_class", "new_cache"]


@functools.cache
def growing_layer_class() -> type:
    """transformers' ``DynamicLayer`` with spare room: appending ``n`` positions writes
    them into a buffer (doubling it when full) instead of ``torch.cat``-ing a copy of
    the whole layer on every pass. ``keys``/``values`` stay views of the used prefix,
    so cropping, compaction and every reader of the cache work unchanged."""
    from transformers.cache_utils import DynamicLayer

    class GrowingLayer(DynamicLayer):
        def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any,
                   **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
            if not self.is_initialized:
                self.lazy_initialization(key_states, value_states)
                self._room = None
            used = self.keys.shape[-2] if self.keys.dim() == key_states.dim() else 0
            end = used + key_states.shape[-2]
            if self._room is None or end > self._room[0].shape[-2]:
                shape = (*key_states.shape[:-2], max(2 * end, 256), key_states.shape[-1])
                room = (key_states.new_empty(shape), value_states.new_empty(shape))
                if used:
                    room[0][..., :used, :] = self.keys
                    room[1][..., :used, :] = self.values
                self._room = room
            self._room[0][..., used:end, :] = key_states
            self._room[1][..., used:end, :] = value_states
            self.keys, self.values = self._room[0][..., :end, :], self._room[1][..., :end, :]
            return self.keys, self.values

        def batch_select_indices(self, indices: torch.Tensor) -> None:
            """Keep only these rows of the batch, in the buffer too (a row leaving a batch)."""
            if not self.is_initialized or self._room is None:
                return
            end = self.keys.shape[-2]
            self._room = (self._room[0][indices], self._room[1][indices])
            self.keys, self.values = self._room[0][..., :end, :], self._room[1][..., :end, :]

    return GrowingLayer


def new_cache() -> Any:
    """An empty ``DynamicCache`` of full (never sliding) growing layers: rollback always
    works, and sliding windows live in the masks."""
    from transformers import DynamicCache

    cache = DynamicCache()
    cache.layer_class_to_replicate = growing_layer_class()
    return cache
