"""Where goose keeps what it computes once per machine (converted models, kernel
plans, cost curves): ``$GOOSE_CACHE``, by default ``~/.cache/goose``."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_dir"]


def cache_dir(kind: str) -> Path:
    """The cache folder for ``kind`` (``"models"``, ``"kernels"``, ``"cost"``, ``"gguf"``); not created."""
    return Path(os.environ.get("GOOSE_CACHE", Path.home() / ".cache" / "goose")) / kind
