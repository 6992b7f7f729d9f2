"""Output directories (never overwritten without asking) and files written whole or not at all."""

from __future__ import annotations

import contextlib
import json
import os

from .errors import UsageError


def check_output_dir(path: str, overwrite: bool, resumable: bool = False) -> None:
    """Refuse a non-empty output directory unless the user asked to overwrite it."""
    if os.path.isfile(path):
        raise UsageError(f"--output_dir {path} is a file")
    if os.path.isdir(path) and os.listdir(path) and not overwrite:
        resume = ", or --resume_from_checkpoint last to continue" if resumable else ""
        raise UsageError(f"--output_dir {path} is not empty: pass --overwrite_output_dir to write into it{resume}")


def write_json(path: str, obj) -> None:
    """Write JSON atomically: a reader never sees a half-written file."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, ensure_ascii=False, default=str)
        f.write("\n")
    os.replace(tmp, path)


@contextlib.contextmanager
def staged(directory: str):
    """Write a stage's files under temporary names and move them into place only when all are written, so a failure
    halfway leaves no half-written output: `with staged(d) as path: open(path("x.json"), "w")...`."""
    os.makedirs(directory, exist_ok=True)
    pending: dict[str, str] = {}

    def path(name: str) -> str:
        pending[name] = os.path.join(directory, f".{name}.tmp{os.getpid()}")
        return pending[name]

    try:
        yield path
    except BaseException:
        for tmp in pending.values():
            if os.path.exists(tmp):
                os.remove(tmp)
        raise
    for name, tmp in pending.items():
        os.replace(tmp, os.path.join(directory, name))
