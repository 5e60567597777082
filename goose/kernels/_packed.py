"""``PackedLinear``: an ``nn.Linear`` that picks its CPU kernel by row count."""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["COPY_KERNELS", "LINEAR_KERNELS", "PackedLinear", "mkl_packed_available"]

LINEAR_KERNELS = ("mkl", "weight-left", "row-pair", "onednn", "mkl-packed")
"""The kernels :class:`PackedLinear` chooses from: ``F.linear`` (MKL), ``W @ x.T``
(weight as the left operand: the BLAS streams each weight row once for all tokens),
``row-pair`` (a lone row padded with a zero row to two, then ``weight-left``: BLAS
sends a single row to its matrix-vector path, which ran on one of the two cores here
and made a one-token pass of SmolLM2 1.7x slower than a two-token one; more rows run
``weight-left`` as they are),
oneDNN on the weight packed once for ``PACK_ROWS`` rows, and MKL's packed GEMM
(``mkl-packed``), whose weight copy serves one exact row count: the rows are padded
with zeros up to the next of ``MKL_PACK_ROWS``."""
COPY_KERNELS = ("onednn", "mkl-packed")
"""The kernels that keep a copy of the weight (oneDNN one, ``mkl-packed`` one per row count)."""


def mkl_packed_available() -> bool:
    """Whether this torch build has MKL's packed GEMM (the ``mkl-packed`` kernel)."""
    return torch.backends.mkl.is_available() and hasattr(torch.ops.mkl, "_mkl_linear")


class PackedLinear(torch.nn.Linear):
    """``nn.Linear`` whose float32 CPU inference forwards use, for each row (token)
    count, the kernel of its ``plan`` (one of :data:`LINEAR_KERNELS`).

    ``plan[r]`` names the kernel for ``r`` rows, ``r`` = 1 .. ``len(plan) - 1``; more
    rows (prefill) take ``plan[0]``. :func:`goose.kernels.tune_linears` fills the plans
    by measurement; the default is ``F.linear`` everywhere (no weight copy).

    Every kernel computes the same linear map with its own summation order (outputs
    agree with ``F.linear`` to float32 rounding; tested). It shares the original
    ``weight``/``bias`` parameters, so tied embeddings stay tied; forwards that need
    gradients, or inputs of another dtype or device, run ``F.linear``.

    Weight copies (for ``onednn`` and ``mkl-packed``) are made when a plan first
    needs them and keyed on the weight's storage and version counter: after an
    in-place change through the parameter (``load_state_dict``, ``weight.add_`` under
    ``no_grad``) the next forward re-packs. Changes through ``weight.data`` bypass the
    version counter; call :meth:`repack` after them.
    """

    PACK_ROWS = 16
    """Batch size the oneDNN copy of the weight is packed for."""
    PLAN_ROWS = 32
    """Row counts a plan covers (1 .. PLAN_ROWS)."""
    MKL_PACK_ROWS = (4, 6, 8, 12, 16)
    """Row counts ``mkl-packed`` keeps a weight copy for (MKL packs for one exact count)."""

    def __init__(self, linear: torch.nn.Linear, plan: Sequence[str] | None = None) -> None:
        torch.nn.Module.__init__(self)  # no fresh weight: reuse the layer's own parameters
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.weight, self.bias = linear.weight, linear.bias
        self._copies: dict[object, torch.Tensor] = {}  # "onednn" or an MKL row count -> packed copy
        self._copies_of: tuple[int, int] | None = None  # (data_ptr, version) the copies were made from
        self.set_plan(plan or ("mkl",) * (self.PLAN_ROWS + 1))

    @classmethod
    def mkl_pack_rows(cls, rows: int) -> int | None:
        """The row count ``mkl-packed`` pads ``rows`` to (``None`` past ``MKL_PACK_ROWS``)."""
        return next((p for p in cls.MKL_PACK_ROWS if p >= rows), None)

    def set_plan(self, plan: Sequence[str]) -> None:
        """Use ``plan[r]`` for ``r`` rows and ``plan[0]`` past the plan; frees the
        weight copies the plan does not use."""
        bad = sorted(set(plan) - set(LINEAR_KERNELS))
        if bad:
            raise ValueError(f"unknown linear kernels {bad}: use {', '.join(LINEAR_KERNELS)}")
        packed_rows = [r for r in range(1, len(plan)) if plan[r] == "mkl-packed"]
        if plan[0] == "mkl-packed":
            raise ValueError("'mkl-packed' serves fixed row counts: plan[0] (prefill) must be another kernel")
        if packed_rows and not mkl_packed_available():
            raise ValueError("this torch build has no MKL packed GEMM: plan without 'mkl-packed'")
        if packed_rows and max(packed_rows) > self.MKL_PACK_ROWS[-1]:
            raise ValueError(f"'mkl-packed' serves at most {self.MKL_PACK_ROWS[-1]} rows, the plan asks it "
                             f"for {max(packed_rows)}")
        if "onednn" in plan and not torch.backends.mkldnn.is_available():
            raise ValueError("this torch build has no oneDNN: plan without 'onednn'")
        self.plan = tuple(plan)
        self._copies = {k: w for k, w in self._copies.items() if k in self._needed()}

    def _needed(self) -> set[object]:
        need: set[object] = {self.mkl_pack_rows(r) for r in range(1, len(self.plan)) if self.plan[r] == "mkl-packed"}
        return need | ({"onednn"} if "onednn" in self.plan else set())

    def copy_bytes(self) -> int:
        """Bytes the plan's weight copies take (made or not yet)."""
        return len(self._needed()) * self.weight.numel() * self.weight.element_size()

    def repack(self) -> None:
        """Drop every weight copy; the next forward packs the current weights afresh."""
        self._copies, self._copies_of = {}, None

    def __getstate__(self) -> dict:
        """A deep copy or pickle leaves the weight copies behind (opaque oneDNN tensors
        cannot be copied); the copy packs its own weights on first use."""
        state = dict(self.__dict__)
        state["_copies"], state["_copies_of"] = {}, None
        return state

    def _copy(self, which: object) -> torch.Tensor:
        key = (self.weight.data_ptr(), self.weight._version)
        if key != self._copies_of:  # the weights changed in place since the copies were made
            self._copies, self._copies_of = {}, key
        packed = self._copies.get(which)
        if packed is None:
            w = self.weight.detach()
            packed = (torch.ops.mkldnn._reorder_linear_weight(w, self.PACK_ROWS) if which == "onednn"
                      else torch.ops.mkl._mkl_reorder_linear_weight(w, which))
            self._copies[which] = packed
        return packed

    def kernel(self, rows: int) -> str:
        """The kernel used for ``rows`` rows."""
        return self.plan[rows] if rows < len(self.plan) else self.plan[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [..., in] -> [..., out]
        if torch.is_grad_enabled() or x.dtype != torch.float32 or x.device.type != "cpu":
            return torch.nn.functional.linear(x, self.weight, self.bias)
        rows = x.numel() // self.in_features
        return self.run(self.kernel(rows), x, rows)

    def run(self, kernel: str, x: torch.Tensor, rows: int) -> torch.Tensor:
        """``x`` (``rows`` rows) through ``kernel``, whatever the plan says."""
        bias = None if self.bias is None else self.bias.detach()
        if kernel == "row-pair" and rows == 1:
            x2 = torch.nn.functional.pad(x.reshape(1, self.in_features), (0, 0, 0, 1))  # [2, in]: the row and zeros
            return self.run("weight-left", x2, 2)[:1].view(*x.shape[:-1], self.out_features)
        if kernel in ("weight-left", "row-pair"):
            # a transposed output would push sdpa off its fused kernel: make it contiguous
            y = torch.mm(self.weight.detach(), x.reshape(rows, self.in_features).t()).t().contiguous()  # [rows, out]
            if bias is not None:
                y += bias
            return y.view(*x.shape[:-1], self.out_features)
        if kernel == "mkl":
            return torch.nn.functional.linear(x, self.weight.detach(), bias)
        if kernel == "mkl-packed":
            pad = self.mkl_pack_rows(rows)
            x2 = torch.nn.functional.pad(x.reshape(rows, self.in_features), (0, 0, 0, pad - rows))  # [pad, in]
            y = torch.ops.mkl._mkl_linear(x2, self._copy(pad), self.weight.detach(), bias, pad)[:rows]
            return y.view(*x.shape[:-1], self.out_features)
        return torch.ops.mkldnn._linear_pointwise(x, self._copy("onednn"), bias, "none", [], "")
