"""Continuing an interrupted fine-tuning run (`--resume`): the settings a seed's result depends on, and the seeds an
earlier run with those settings already finished."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict

from ..errors import UsageError
from ..fingerprint import content_hash, settings, settings_hash
from ..records import SeedResult
from ..tasks import Task

logger = logging.getLogger(__name__)

CONFIG_FILE = "dontstop_config.json"


def resolved_config(task_args, args) -> dict:
    """Every setting of the run, as written to dontstop_config.json."""
    resolved = {"task": asdict(task_args), "training": args.to_dict()}
    return json.loads(json.dumps(resolved, default=str))


def fingerprint(task_args, args, task: Task) -> str:
    """What a seed's result depends on: the settings (less those that change no seed's result, marked on their
    fields) and the task files. A finished seed is reused only when its fingerprint matches, so a stale result can
    never slip in."""
    files = [split.sha256 for split in (task.train, task.dev, task.test) if split is not None]
    files += [content_hash(path) for path in task_args.unlabeled_file or []]
    return settings_hash(task_args, args, scope="seed", extra=files)[:16]


def finished_seed(output_dir: str, seed: int, key: str) -> SeedResult | None:
    """The record of a seed an earlier run finished with the same settings and files, if there is one."""
    path = os.path.join(output_dir, f"seed-{seed}", SeedResult.FILE)
    if not os.path.exists(path):
        return None
    record = SeedResult.load(path)
    if record.fingerprint != key:
        logger.info("Seed %d: %s came from other settings or files; training it again", seed, path)
        return None
    return record


def check_resumable(task_args, args) -> None:
    """--resume continues a run with the same settings (more seeds are fine); anything else is refused."""
    path = os.path.join(args.output_dir, CONFIG_FILE)
    if not os.path.exists(path):
        raise UsageError(f"--resume: {path} does not exist, so there is no earlier run to continue")
    with open(path, encoding="utf-8") as f:
        saved = json.load(f)
    saved = {**saved.get("task", {}), **saved.get("training", {})}
    current = settings(task_args, args, scope="seed")
    changed = sorted(f"--{key}" for key in current if key in saved and saved[key] != current[key])
    if changed:
        raise UsageError(f"--resume: {', '.join(changed)} differ from the run in {args.output_dir}")
