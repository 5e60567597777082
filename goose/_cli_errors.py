"""How the command line reports a user's mistake: one line naming the option and the
fix, exit code 2, before any model loads wherever the mistake can be seen then."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import typer
from typer.core import TyperGroup

__all__ = ["GooseGroup", "UserError", "check_output_dir", "check_output_file", "option_message"]

OPTIONS = {"top_p": "--top-p", "top_k": "--top-k", "max_new_tokens": "--max-new-tokens", "temperature": "--temperature",
           "seed": "--seed", "budget": "--budget", "verifier": "--verifier", "prompts_per_task": "--prompts-per-task"}
"""Python argument names as the command line spells them."""


def option_message(message: str) -> str:
    """``message`` with the argument names it mentions spelled as command-line options."""
    return re.sub(r"\b(" + "|".join(OPTIONS) + r")\b(?= must| of | \d| is )",
                  lambda m: OPTIONS[m.group(1)], message)


class UserError(ValueError):
    """A mistake in what the user asked for, which the command line prints as one line
    (with exit code 2) instead of a traceback."""


class GooseGroup(TyperGroup):
    """The ``goose`` command group: a ``ValueError`` (a bad option value, found by the
    library's own checks, or a :class:`UserError`) or an ``OSError`` (a path that cannot
    be read or written) raised by a command is printed as one line, ``goose: error:
    ...``, on stderr, and the command exits with code 2."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except (ValueError, OSError) as err:
            if isinstance(err, OSError):
                message = f"{err.strerror or err}: {err.filename}" if err.filename else str(err)
            else:
                message = str(err)
            typer.echo(f"goose: error: {option_message(' '.join(message.split()))}", err=True)
            raise typer.Exit(2) from None


def check_output_file(path: Path | None, option: str) -> None:
    """Refuse, before any work, an output file that cannot be written: a directory, or a
    place whose folder cannot be made or written."""
    if path is None:
        return
    if path.is_dir():
        raise UserError(f"{option} {path} is a directory: give a file name")
    folder = path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"{option} {path}: cannot make its folder ({err.strerror or err})") from None
    if not os.access(folder, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise UserError(f"{option} {path} cannot be written (permission denied): choose another path")


def check_output_dir(path: Path, option: str) -> None:
    """Refuse, before any work, an output folder that is a file or cannot be made or written."""
    if path.exists() and not path.is_dir():
        raise UserError(f"{option} {path} is a file: give a folder (it is made if missing)")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"{option} {path}: cannot make the folder ({err.strerror or err})") from None
    if not os.access(path, os.W_OK):
        raise UserError(f"{option} {path} cannot be written (permission denied): choose another folder")
