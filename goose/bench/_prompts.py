"""Benchmark prompts: Spec-Bench-style JSONL records, grouped by task."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["RELEASE_DEV_IDS", "TASKS", "BenchPrompt", "data_dir", "load_prompts"]

TASKS = ("mt_bench", "translation", "summarization", "qa", "math_reasoning", "rag", "humaneval")
TASK_FILES = {"humaneval": "humaneval_dev.jsonl"}  # every other task lives in spec_bench_dev.jsonl

# the 28 development prompts the released GOOSE was measured on (shared/reference/goose-release-dev.md)
RELEASE_DEV_IDS = {
    "mt_bench": ["85", "113", "129", "133"], "translation": ["199", "211", "223", "225"],
    "summarization": ["267", "285", "301", "315"], "qa": ["333", "337", "357", "385"],
    "math_reasoning": ["433", "469", "477", "479"], "rag": ["489", "493", "499", "519"],
    "humaneval": ["humaneval-24", "humaneval-84", "humaneval-120", "humaneval-142"],
}


@dataclass(frozen=True)
class BenchPrompt:
    """One benchmark prompt: a chat turn (``turns`` records) or a raw completion prompt."""

    qid: str
    task: str
    text: str
    chat: bool
    origin: str  # "file:line", for error messages


def data_dir() -> Path:
    """Where the task files are: ``$GOOSE_DATA``, else a ``shared/data`` next to (or
    above) the working directory or this checkout."""
    if os.environ.get("GOOSE_DATA"):
        return Path(os.environ["GOOSE_DATA"])
    for base in (Path.cwd(), Path(__file__).resolve()):
        for parent in [base, *base.parents]:
            if (parent / "shared" / "data").is_dir():
                return parent / "shared" / "data"
    raise ValueError("no shared/data directory found: set GOOSE_DATA or pass JSONL files to --tasks")


def _read(path: Path) -> list[BenchPrompt]:
    if not path.is_file():
        raise ValueError(f"prompt file {path} does not exist")
    out = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path.name}:{n}"
        try:
            r = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{where}: not JSON ({err.msg})") from None
        if not isinstance(r, dict) or ("turns" not in r and "prompt" not in r):
            raise ValueError(f"{where}: a record needs 'turns' (chat) or 'prompt' (raw completion)")
        chat = "turns" in r
        text = r["turns"][0] if chat and r["turns"] else r.get("prompt", "")
        qid = str(r.get("question_id", where))
        out.append(BenchPrompt(qid, str(r.get("task", path.stem)), text if isinstance(text, str) else "", chat, where))
    if not out:
        raise ValueError(f"prompt file {path} holds no prompts")
    return out


def load_prompts(tasks: Sequence[str], ids: Sequence[str] = (), per_task: int | None = 4,
                 data: Path | None = None) -> list[BenchPrompt]:
    """Prompts of the named tasks (or JSONL files), ``per_task`` from each (None: all),
    or exactly the question ids in ``ids``. Errors name the task, file or id at fault."""
    if not tasks:
        raise ValueError("no tasks given")
    if per_task is not None and per_task < 1:
        raise ValueError(f"prompts per task must be >= 1, got {per_task}")
    pool: list[BenchPrompt] = []
    wanted: list[str] = []
    for t in tasks:
        if t.endswith(".jsonl") or "/" in t:
            pool += _read(Path(t))
            continue
        if t not in TASKS:
            raise ValueError(f"unknown task {t!r}: use one of {', '.join(TASKS)} or a JSONL file")
        wanted.append(t)
        pool += [p for p in _read((data or data_dir()) / TASK_FILES.get(t, "spec_bench_dev.jsonl")) if p.task == t]
    seen: dict[tuple[str, str], BenchPrompt] = {}
    for p in pool:
        seen.setdefault((p.task, p.qid), p)
    pool = list(seen.values())
    if ids:
        by_id = {p.qid: p for p in pool}
        missing = [i for i in ids if i not in by_id]
        if missing:
            raise ValueError(f"question ids not found in the given tasks: {', '.join(missing)}")
        return [by_id[i] for i in ids]
    out: list[BenchPrompt] = []
    counts: dict[str, int] = {}
    for p in pool:
        if per_task is None or counts.get(p.task, 0) < per_task:
            counts[p.task] = counts.get(p.task, 0) + 1
            out.append(p)
    empty = [t for t in wanted if t not in counts]
    if empty:
        raise ValueError(f"no prompts for task(s) {', '.join(empty)}")
    return out
