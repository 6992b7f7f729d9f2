"""Snapshots of a pretraining run at fractions of its steps (`--snapshots 0.25,0.5`), each a model of its own: the
points of a budget curve, which `dontstop run` fine-tunes and evaluates like the final model."""

from __future__ import annotations

import logging
import os

from transformers import TrainerCallback

from ..models import carry_unused_weights
from ..records import Snapshot

logger = logging.getLogger(__name__)


def snapshot_dir(output_dir: str, fraction: float) -> str:
    return os.path.join(output_dir, f"snapshot-{fraction:g}")


class Snapshots(TrainerCallback):
    """Save the model when the global step reaches each fraction of `total_steps`. The trainer is set once built."""

    def __init__(self, fractions: list[float], total_steps: int, source: str | None, objective: str):
        self.at = {max(1, round(f * total_steps)): f for f in sorted(fractions)}
        self.source, self.objective = source, objective
        self.trainer = None

    def on_step_end(self, args, state, control, **kwargs):
        fraction = self.at.get(state.global_step)
        if fraction is None or self.trainer is None:
            return
        directory = snapshot_dir(args.output_dir, fraction)
        self.trainer.save_model(directory)
        if self.trainer.is_world_process_zero():
            if self.source:
                carry_unused_weights(self.source, directory, self.objective)
            Snapshot(fraction, state.global_step, state.num_input_tokens_seen or None).save(directory)
            logger.info("Snapshot at step %d (%g of the training): %s", state.global_step, fraction, directory)
