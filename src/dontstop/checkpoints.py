"""Checkpoints that are whole or absent: a kill at any moment leaves no half-written `checkpoint-N`.

The Trainer writes a checkpoint file by file into `OUTPUT_DIR/checkpoint-N`; killed halfway, it leaves a directory
that `--resume_from_checkpoint last` then picks and fails on. Here every checkpoint is written into a staging
directory (`OUTPUT_DIR/.staging-PID/`), completed (weights, optimizer, scheduler, RNG states, trainer state, and a
weight average if any) and only then renamed into place: a rename is atomic. (With several processes, each of which
writes its own part of a checkpoint, the Trainer's own saving is kept.) A staging directory left by a dead
process is removed on the next start; a `checkpoint-N` without its trainer state or weights (written by an earlier
version, or by hand) is skipped by `last`, with a note.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil

from .outputs import process_alive

logger = logging.getLogger(__name__)

STAGING = re.compile(r"^\.staging-(\d+)$")
CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
LOSS_FILE = "dontstop_loss.json"  # the summed training loss up to the checkpoint: a resumed run's loss is exact
WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "adapter_model.safetensors")


def clean_stale(output_dir: str) -> None:
    """Remove the staging directories of processes that died before renaming their checkpoint into place."""
    if not os.path.isdir(output_dir):
        return
    for name in os.listdir(output_dir):
        found = STAGING.match(name)
        if found and not process_alive(int(found.group(1))):
            logger.info("Removing %s, the unfinished checkpoint of a process that no longer runs", name)
            shutil.rmtree(os.path.join(output_dir, name), ignore_errors=True)


def complete(checkpoint: str) -> bool:
    names = set(os.listdir(checkpoint))
    return "trainer_state.json" in names and any(w in names for w in WEIGHTS)


def last_complete_checkpoint(output_dir: str) -> str | None:
    """The newest whole `checkpoint-N` of `output_dir` (incomplete ones skipped, with a note), or None."""
    if not os.path.isdir(output_dir):
        return None
    found = sorted(
        ((int(m.group(1)), name) for name in os.listdir(output_dir) if (m := CHECKPOINT.match(name))), reverse=True
    )
    for _, name in found:
        path = os.path.join(output_dir, name)
        if os.path.isdir(path) and complete(path):
            return path
        logger.warning("%s is incomplete (no trainer state or no weights): skipped", path)
    return None


class AtomicCheckpoints:
    """A Trainer mixin: `_save_checkpoint` writes into a staging directory and renames the finished checkpoint into
    place. The trainer's `averager` (weight averaging), if it has one, saves its average into the checkpoint before
    the rename, so the average is part of the same whole."""

    _staging: str | None = None
    loss_sum_before_resume = 0.0  # set from the checkpoint a run resumes from (`loss_sum_before`)

    def _get_output_dir(self, trial):
        return self._staging or super()._get_output_dir(trial)

    def _save_checkpoint(self, model, trial):
        from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, rotate_checkpoints

        if self.args.world_size > 1:  # every process writes into the checkpoint: the Trainer's own saving
            return super()._save_checkpoint(model, trial)
        root = super()._get_output_dir(trial)
        name = f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
        self._staging = os.path.join(root, f".staging-{os.getpid()}")
        try:
            super()._save_checkpoint(model, trial)
            staged = os.path.join(self._staging, name)
            averager = getattr(self, "averager", None)
            if averager is not None and self.args.should_save:
                averager.save(staged)
            if self.args.should_save:
                self._save_loss_sum(staged)
        finally:
            staging, self._staging = self._staging, None
        if self.args.should_save:
            move_into_place(os.path.join(staging, name), os.path.join(root, name))
            shutil.rmtree(staging, ignore_errors=True)
            best = self.state.best_model_checkpoint
            if best and best.startswith(staging):
                self.state.best_model_checkpoint = os.path.join(root, os.path.basename(best))
            rotate_checkpoints(root, self.args.save_total_limit, self.state.best_model_checkpoint, use_mtime=True)

    def _save_loss_sum(self, checkpoint: str) -> None:
        """The Trainer reports a resumed run's loss over the last segment only, and keeps no running sum in its
        checkpoints; this one does (the logged part plus the part not yet logged)."""
        pending = getattr(self, "_tr_loss", None)
        total = self.loss_sum_before_resume + getattr(self, "_total_loss_scalar", 0.0)
        total += pending.item() if pending is not None else 0.0
        with open(os.path.join(checkpoint, LOSS_FILE), "w") as f:
            json.dump({"step": self.state.global_step, "loss_sum": total}, f)


def loss_sum_before(checkpoint: str) -> float | None:
    """The training loss summed over every step up to `checkpoint`, or None when it does not record one."""
    path = os.path.join(checkpoint, LOSS_FILE)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)["loss_sum"]


def move_into_place(source: str, target: str) -> None:
    """Rename a finished directory to `target`; a checkpoint already there (a resumed run saving the same step) is
    moved aside first and removed after, so `target` is never half of one and half of the other."""
    aside = None
    if os.path.exists(target):
        aside = f"{target}.old-{os.getpid()}"
        os.replace(target, aside)
    os.replace(source, target)
    if aside:
        shutil.rmtree(aside, ignore_errors=True)
