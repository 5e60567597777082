"""Benchmark prompts: Spec-Bench-style JSONL records, grouped by task."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["TASKS", "BenchPrompt", "data_dir", "find_reference", "load_prompts", "load_reference",
           "read_prompt_file"]

TASKS = ("mt_bench", "translation", "summarization", "qa", "math_reasoning", "rag", "humaneval")
TASK_FILES = {"humaneval": "humaneval_dev.jsonl"}  # every other task lives in spec_bench_dev.jsonl

REFERENCES = Path(__file__).parent / "reference"


def find_reference(name: str) -> dict | None:
    """The reference run ``name`` names (shipped, or a ``.json`` file), else ``None``."""
    if name.endswith(".json") or (REFERENCES / f"{name}.json").is_file():
        return load_reference(name)
    return None


def load_reference(name_or_path: str | Path) -> dict:
    """A reference run's data (prompt ids per task, its numbers, the targets set
    against it): a name shipped in ``goose/bench/reference`` (``release-dev``) or a
    JSON file of the same form."""
    path = Path(name_or_path)
    if not path.suffix:
        path = REFERENCES / f"{name_or_path}.json"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in REFERENCES.glob("*.json")))
        raise ValueError(f"no reference run {str(name_or_path)!r}: use {known} or a JSON file")
    return json.loads(path.read_text())


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


def read_prompt_file(path: Path) -> list[BenchPrompt]:
    """The prompts of one JSONL file: records with ``turns`` (a chat turn, the first one)
    or ``prompt`` (raw text); errors name the file and line."""
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
            pool += read_prompt_file(Path(t))
            continue
        if t not in TASKS:
            raise ValueError(f"unknown task {t!r}: use one of {', '.join(TASKS)} or a JSONL file")
        wanted.append(t)
        pool += [p for p in read_prompt_file((data or data_dir()) / TASK_FILES.get(t, "spec_bench_dev.jsonl")) if p.task == t]
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
