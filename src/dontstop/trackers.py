"""Experiment trackers (`--report_to tensorboard|wandb|mlflow|...`, as in transformers): checked before anything
loads, and writing under the run's output directory.

transformers' TensorBoard callback opens its writer at the first log, before training begins; the evaluation
before training (which dontstop logs) came first, so the writer opened in `./runs` of the working directory and
every later curve followed it there. Here the writer's directory is set to `OUTPUT_DIR/runs` when the Trainer is
made (unless $TENSORBOARD_LOGGING_DIR says otherwise), and the local stores of wandb and mlflow default to
`OUTPUT_DIR/wandb` and `OUTPUT_DIR/mlruns` when their own variables are unset.
"""

from __future__ import annotations

import os

from .errors import UsageError

# tracker -> (transformers' availability check, the package to install)
TRACKERS = {
    "tensorboard": ("is_tensorboard_available", "tensorboard"),
    "wandb": ("is_wandb_available", "wandb"),
    "mlflow": ("is_mlflow_available", "mlflow"),
    "comet_ml": ("is_comet_available", "comet_ml"),
    "neptune": ("is_neptune_available", "neptune"),
    "clearml": ("is_clearml_available", "clearml"),
    "dvclive": ("is_dvclive_available", "dvclive"),
    "codecarbon": ("is_codecarbon_available", "codecarbon"),
    "swanlab": ("is_swanlab_available", "swanlab"),
    "trackio": ("is_trackio_available", "trackio"),
}


def requested(report_to) -> list[str]:
    if report_to in (None, "none", ["none"]):
        return []
    return [report_to] if isinstance(report_to, str) else list(report_to)


def check_trackers(report_to) -> None:
    """A one-line UsageError naming the package to install for a tracker that is not installed."""
    from transformers.integrations import integration_utils

    for name in requested(report_to):
        if name in TRACKERS and not getattr(integration_utils, TRACKERS[name][0])():
            package = TRACKERS[name][1]
            raise UsageError(f"--report_to {name} needs the {package} package: pip install {package}")


def place_tracker_logs(trainer) -> None:
    """Every tracker's local files under the Trainer's output directory (see the module docstring)."""
    names = requested(trainer.args.report_to)
    root = trainer.args.output_dir
    if "wandb" in names:
        os.environ.setdefault("WANDB_DIR", root)
    if "mlflow" in names:
        os.environ.setdefault("MLFLOW_TRACKING_URI", "file://" + os.path.abspath(os.path.join(root, "mlruns")))
    if "tensorboard" in names:
        from transformers.integrations import TensorBoardCallback

        for callback in trainer.callback_handler.callbacks:
            if isinstance(callback, TensorBoardCallback) and callback.logging_dir is None:
                callback.logging_dir = os.path.join(root, "runs")
