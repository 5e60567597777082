"""The vocabulary projection of goose's passes: bfloat16 copies, exact where read."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ..verify import BoundedLogits

__all__ = ["VerifyHead", "cpu_has_fast_bf16"]


def cpu_has_fast_bf16() -> bool:
    """Whether oneDNN runs bfloat16 matmuls natively here (AVX512-BF16 or AMX)."""
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


class VerifyHead:
    """A model's output projection as goose's passes use it, with the bfloat16 copy it
    derives, kept here (never on the model) and keyed on the weight's storage and
    version counter, so an in-place change of the weights (``load_state_dict``, an
    in-place merge under ``no_grad``) makes a fresh copy. Changes through
    ``weight.data`` bypass the counter: call :meth:`repack` after them.

    * :meth:`seed_logits`: the prompt's seeding pass (top-k after each prompt position,
      for the recycling table) only shapes drafts, never what is emitted, so on a CPU
      with native bfloat16 it runs in bfloat16 (3.6x faster for 1k rows on a 2-core
      Xeon), and :meth:`seed_topk` reads a candidate vocabulary (:meth:`seed_vocab`).
    * :meth:`argmax_exact_logits`: greedy verification reads each row's argmax only:
      bfloat16 first, then float32 wherever an entry could be among the row's
      ``EXACT_TOP_K`` largest.
    """

    BF16_DOT_ERROR = 2.0**-6
    BF16_OUT_ERROR = 2.0**-7
    """Bounds on |bfloat16 head - exact| (see :meth:`argmax_exact_logits`), each twice the worst case."""
    EXACT_ENTRIES_MAX = 256
    """Past this many entries that could be among a row's largest, the row takes the float32 head."""
    EXACT_TOP_K = 10
    """The largest entries of each row made exact (the decode loop summarises passes by
    their top 10 for the drafting sources)."""

    SEED_VOCAB = 8192
    """Prompt seeding reads the logits of the ``SEED_VOCAB`` lowest ids and of the
    prompt's own tokens (:meth:`seed_vocab`). A byte-pair vocabulary numbers its tokens
    in the order its merges were learnt, most frequent first. With SmolLM2's 49,152 ids,
    on the 28 release-dev prompts, the candidates' top 1 is the whole head's at 96% of
    the seeded positions, for a sixth of the cost (0.06 s instead of 0.39 s on a
    1,000-token prompt, 2-core CPU); the recycling table's tokens per pass did not move
    (1.959 both ways on the rag and summarization prompts). ``None``: the whole head."""

    def __init__(self, model: Any) -> None:
        self.model = model
        head = model.get_output_embeddings()
        dtype = next(model.parameters()).dtype
        cpu = next(model.parameters()).device.type == "cpu"
        self.softcap = getattr(model.config, "final_logit_softcapping", None)
        self.bf16 = (cpu and dtype == torch.float32 and getattr(head, "bias", None) is None and cpu_has_fast_bf16())
        self._copy: tuple[tuple[int, int], torch.Tensor, torch.Tensor] | None = None

    def repack(self) -> None:
        """Forget the bfloat16 copy; the next pass derives it from the current weights."""
        self._copy = None

    def copy_bytes(self) -> int:
        return 0 if self._copy is None else self._copy[1].numel() * 2 + self._copy[2].numel() * 4

    def _bf16(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The projection packed by oneDNN in bfloat16, and the norms of its float32 rows ``[vocab]``."""
        weight = self.model.get_output_embeddings().weight
        key = (weight.data_ptr(), weight._version)
        if self._copy is None or self._copy[0] != key:
            w = weight.detach()
            self._copy = None  # free the stale copy before making the new one
            self._copy = (key, torch.ops.mkldnn._reorder_linear_weight(w.to(torch.bfloat16), 1), w.norm(dim=-1))
        return self._copy[1], self._copy[2]

    def _bf16_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """``[n, vocab]`` float32 values of the bfloat16 head on ``hidden`` ``[n, d]`` (no softcap)."""
        packed, _ = self._bf16()
        return torch.ops.mkldnn._linear_pointwise(hidden.to(torch.bfloat16), packed, None, "none", [], "").float()

    def _cap(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.tanh(logits / self.softcap) * self.softcap if self.softcap else logits

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """``[n, vocab]`` float32 logits of ``hidden`` ``[n, d]`` by the model's own head."""
        return self._cap(self.model.get_output_embeddings()(hidden).float())

    def seed_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Logits for the drafting sources' seeding: bfloat16 where that is fast, else exact."""
        if not self.bf16:
            return self.logits(hidden)
        return self._cap(self._bf16_logits(hidden))

    def seed_vocab(self, prompt: Sequence[int]) -> torch.Tensor | None:
        """The ids prompt seeding reads, ascending: the ``SEED_VOCAB`` lowest and the
        prompt's own tokens; ``None`` (the whole head) where that would be most of it."""
        weight = self.model.get_output_embeddings().weight
        vocab, low = weight.shape[0], self.SEED_VOCAB
        if low is None or vocab <= 2 * low:
            return None
        own = sorted({int(t) for t in prompt if low <= int(t) < vocab})
        return torch.cat([torch.arange(low), torch.tensor(own, dtype=torch.long)]).to(weight.device)

    def seed_topk(self, hidden: torch.Tensor, k: int,
                  vocab: torch.Tensor | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` ids and probabilities of :meth:`seed_logits` for each row of ``hidden``
        (``[n, k]`` each), computed 256 rows at a time. With ``vocab`` (ascending ids, as
        :meth:`seed_vocab` gives), float32 logits of those ids only, normalised over them:
        each probability is then its share of the candidates' mass, a little above its
        share of the whole vocabulary's."""
        ids, probs = [], []
        with torch.inference_mode():
            for chunk in torch.split(hidden, 256):
                logits = self.seed_logits(chunk) if vocab is None else self._candidate_logits(chunk, vocab)
                top = torch.topk(logits, k, dim=-1)
                lse = torch.logsumexp(logits, dim=-1, keepdim=True)
                ids.append((top.indices if vocab is None else vocab[top.indices]).cpu())
                probs.append((top.values - lse).exp().cpu())
        return torch.cat(ids).numpy(), torch.cat(probs).numpy()

    def _candidate_logits(self, hidden: torch.Tensor, vocab: torch.Tensor) -> torch.Tensor:
        """``[n, len(vocab)]`` float32 logits of the ids ``vocab`` (ascending): a leading run
        ``0..m-1`` reads the head's rows in place, the rest are gathered."""
        head = self.model.get_output_embeddings()
        weight, bias = head.weight.detach(), getattr(head, "bias", None)
        m = int((vocab == torch.arange(vocab.numel(), device=vocab.device)).sum())  # ascending: a prefix
        parts = []
        for rows in ((slice(0, m),) if m else ()) + ((vocab[m:],) if m < vocab.numel() else ()):
            parts.append(torch.nn.functional.linear(hidden.to(weight.dtype), weight[rows],
                                                    None if bias is None else bias[rows]))
        return self._cap(torch.cat(parts, dim=-1).float())

    @property
    def bounds(self) -> bool:
        """Whether :meth:`bounded_logits` gives bounds (else it gives exact logits)."""
        return self.bf16 and not self.softcap

    def bounded_logits(self, hidden: torch.Tensor) -> BoundedLogits | torch.Tensor:
        """The logits of ``hidden`` ``[n, d]`` for exact sampling
        (:func:`goose.verify.sample_bounded`): the bfloat16 head's values with the radius
        of :meth:`argmax_exact_logits` (``F |a_j| + E |w_j| |x|``), float32 entries
        and rows on demand. Exact ``[n, vocab]`` logits where :attr:`bounds` is false."""
        if not self.bounds:
            return self.logits(hidden)
        norms, head = self._bf16()[1], self.model.get_output_embeddings()
        weight, approx = head.weight.detach(), self._bf16_logits(hidden)  # approx [n, vocab]
        x_norm = hidden.norm(dim=-1)  # [n]

        def radius(i: int) -> torch.Tensor:  # [vocab]
            return self.BF16_OUT_ERROR * approx[i].abs() + self.BF16_DOT_ERROR * norms * x_norm[i]

        def entries(i: int, cols: torch.Tensor) -> torch.Tensor:  # [len(cols)]
            with torch.inference_mode():
                return (weight[cols] * hidden[i]).sum(dim=-1)

        def row(i: int) -> torch.Tensor:  # [vocab]
            with torch.inference_mode():
                return head(hidden[i : i + 1]).float()[0]

        return BoundedLogits(approx, radius, entries, row)

    def argmax_exact_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """``[n, vocab]`` float32 logits of ``hidden`` ``[n, d]`` that are exact (float32)
        at each row's ``EXACT_TOP_K`` largest entries and at every entry that could be
        one of them; the others hold the bfloat16 head's values, which lie below them.

        Why those entries are exact: the bfloat16 value ``a_j`` of a logit
        ``l_j = w_j . x`` errs by at most ``E |w_j| |x| + F |a_j|``. Rounding ``w`` and
        ``x`` to bfloat16 (unit roundoff ``u = 2^-8``) moves each product by at most
        ``(2u + u^2)|w_i x_i|``, summing in float32 adds at most ``d 2^-24`` times the
        sum of ``|w_i x_i|``, which is at most ``|w_j| |x|`` (Cauchy-Schwarz); rounding
        the output to bfloat16 adds ``u |a_j| / (1 - u)``. ``E = 2^-6`` and ``F = 2^-7``
        are twice these for any ``d`` up to 65536. Take the row's ``k`` best entries by
        bfloat16, compute them in float32, and let ``m`` be the least of those: every
        ``j`` with ``a_j + F |a_j| + E |w_j| |x| < m`` has ``l_j < m`` (and ``a_j < m``),
        so it is not among the ``k`` largest. The others, a few dozen per row on real
        text, are computed in float32 too, so the ``k`` largest entries, the argmax first,
        are the float32 head's up to float32 rounding. A row with more than
        ``EXACT_ENTRIES_MAX`` of them (a nearly flat distribution) takes the float32
        head whole.
        """
        if not self.bf16:
            return self.logits(hidden)
        norms, head = self._bf16()[1], self.model.get_output_embeddings()
        weight, approx = head.weight.detach(), self._bf16_logits(hidden)  # approx [n, vocab]
        n, k = hidden.shape[0], min(self.EXACT_TOP_K, approx.shape[-1])
        best = approx.topk(k, dim=-1).indices  # [n, k]
        floor = (weight[best] * hidden[:, None]).sum(dim=-1).min(dim=-1).values  # [n] exact k-th of these
        x_norm = hidden.norm(dim=-1)  # [n]
        # coarse cut, one comparison per entry (the largest row norm for every row):
        # a + F|a| >= reach  <=>  a >= reach / (1 +- F) by the sign of reach
        reach = floor - self.BF16_DOT_ERROR * norms.max() * x_norm
        coarse = torch.where(reach > 0, reach / (1 + self.BF16_OUT_ERROR), reach / (1 - self.BF16_OUT_ERROR))
        rows, cols = (approx >= coarse[:, None]).nonzero(as_tuple=True)
        a = approx[rows, cols]
        could = a + self.BF16_OUT_ERROR * a.abs() + self.BF16_DOT_ERROR * norms[cols] * x_norm[rows] >= floor[rows]
        rows, cols = rows[could], cols[could]  # the k best themselves included
        flat = torch.bincount(rows, minlength=n) > self.EXACT_ENTRIES_MAX  # [n]
        if bool(flat.any()):
            rows, cols = rows[~flat[rows]], cols[~flat[rows]]
            approx[flat] = head(hidden[flat]).float()
        approx[rows, cols] = (weight[cols] * hidden[rows]).sum(dim=-1)
        return self._cap(approx)  # monotone: keeps the order
