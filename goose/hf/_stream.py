"""Streaming a generation's text as the decode loop commits it, through transformers'
own incremental decoding (:class:`transformers.TextStreamer`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from transformers import TextStreamer

__all__ = ["KindStreamer"]


class KindStreamer(TextStreamer):
    """Streams committed tokens as text, each piece with the kind of the tree nodes it
    came from (``"spine"``, ``"branch"`` or ``"bonus"``, :attr:`DraftTree.kinds`).

    transformers' :class:`~transformers.TextStreamer` decodes the tokens so far and
    releases text only once it is final (whole words, whole characters: a multi-byte
    character split over two tokens is held back until both are in), so the pieces
    written add up to exactly ``tokenizer.decode(tokens, skip_special_tokens=True)``.
    Pass :meth:`on_commit` as the decode loop's ``on_commit`` and call :meth:`end` after
    the generation. A piece is labelled with the kind of the first token of the step
    that released it.

    Args:
        tokenizer: the model's tokenizer.
        write: ``write(text, kind)``, called with each final piece of text.
    """

    def __init__(self, tokenizer: Any, write: Callable[[str, str], None]) -> None:
        super().__init__(tokenizer, skip_prompt=False, skip_special_tokens=True)
        self.write = write
        self.kind = "bonus"
        self.text = ""

    def on_commit(self, tokens: list[int], kinds: list[str]) -> None:
        """The decode loop's ``on_commit(tokens, kinds)``."""
        if tokens:
            self.kind = kinds[0]
            self.put(torch.tensor(tokens))

    def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
        if text:
            self.text += text
            self.write(text, self.kind)
