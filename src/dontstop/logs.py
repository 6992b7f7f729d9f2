"""How dontstop talks: one line per stage and per evaluation, progress bars, and nothing else unless asked.

By default the libraries underneath speak only in errors: transformers' load reports (the MLM head a sentence encoder
lacks, a classifier made fresh: dontstop handles both on purpose and says so in its own words), its tokenizer's
length notices, datasets' notes. The Trainer's dictionaries of logged values stay in `metrics.json` and the
trackers instead of the terminal; an evaluation is one line. A warning repeated by every arm of an experiment is
said once (`once`). `--verbose` (or DONTSTOP_VERBOSE=1) restores everything, at INFO for every library.
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings

logger = logging.getLogger("dontstop")

_said: set = set()


def verbose() -> bool:
    return os.environ.get("DONTSTOP_VERBOSE", "") not in ("", "0")


def setup(verbose_: bool | None = None) -> None:
    """Logging for a command: dontstop at INFO ($DONTSTOP_LOG_LEVEL), other libraries at WARNING, or, when verbose,
    everything at INFO."""
    if verbose_:
        os.environ["DONTSTOP_VERBOSE"] = "1"  # for the Trainer callbacks and any subprocess
    loud = verbose()
    level = os.environ.get("DONTSTOP_LOG_LEVEL", "INFO").upper()
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    logging.getLogger().setLevel(logging.INFO if loud else max(logging.WARNING, logging.getLevelName(level)))
    logging.getLogger("dontstop").setLevel(level)
    quiet_libraries(loud)


def quiet_libraries(loud: bool) -> None:
    """transformers and datasets at ERROR (INFO when loud); their progress bars stay. Through the variables they
    read when imported, so that `--help` imports neither; directly where one is imported already."""
    import sys

    level = "info" if loud else "error"
    for library, variable in (("transformers", "TRANSFORMERS_VERBOSITY"), ("datasets", "DATASETS_VERBOSITY")):
        os.environ[variable] = level
        if library in sys.modules:
            getattr(sys.modules[library].utils.logging, f"set_verbosity_{level}")()
    if not loud:  # pinned memory is asked for only on CUDA (recipe.py); a user's own arguments may still ask
        warnings.filterwarnings("ignore", message=".*pin_memory.*no accelerator is found.*")


@contextlib.contextmanager
def silenced(name: str):
    """The logger `name` below WARNING says nothing for the while."""
    log = logging.getLogger(name)
    level = log.level
    log.setLevel(logging.WARNING)
    try:
        yield
    finally:
        log.setLevel(level)


def once(log: logging.Logger, level: int, message: str, *args) -> None:
    """Log `message % args` the first time only in this process: every arm of an experiment reads the same files,
    and a warning about them is news once."""
    key = (log.name, level, message, args)
    if key not in _said:
        _said.add(key)
        log.log(level, message, *args)


def quiet_trainer(trainer, describe=None) -> None:
    """Swap a Trainer's printing callbacks for its progress bar alone, plus one line per evaluation where
    `describe(metrics)` gives one (a Trainer with --disable_tqdm keeps no bar). Nothing changes when verbose."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    if verbose():
        return
    had_bar = any(type(c) is ProgressCallback for c in trainer.callback_handler.callbacks)
    trainer.remove_callback(ProgressCallback)
    trainer.remove_callback(PrinterCallback)
    trainer.add_callback(quiet_progress_class()(bar=had_bar, describe=describe))


def quiet_progress_class():
    """Defined on first use: transformers is slow to import, and `--help` needs none of it."""
    global _QuietProgress
    if _QuietProgress is None:
        from transformers.trainer_callback import ProgressCallback

        class QuietProgress(ProgressCallback):
            def __init__(self, bar: bool, describe):
                super().__init__()
                self.bar, self.describe = bar, describe

            def on_train_begin(self, args, state, control, **kwargs):
                self.training = True  # evaluations before and after training: the stage sums them up itself
                if self.bar:
                    super().on_train_begin(args, state, control, **kwargs)

            def on_step_end(self, args, state, control, **kwargs):
                if self.training_bar is not None:
                    super().on_step_end(args, state, control, **kwargs)

            def on_prediction_step(self, args, state, control, eval_dataloader=None, **kwargs):
                if self.bar:
                    super().on_prediction_step(args, state, control, eval_dataloader=eval_dataloader, **kwargs)

            def on_evaluate(self, args, state, control, metrics=None, **kwargs):
                super().on_evaluate(args, state, control, **kwargs)
                line = self.describe(metrics or {}) if self.describe and getattr(self, "training", False) else None
                if line and state.is_world_process_zero:
                    text = f"step {state.global_step}: {line}"
                    self.training_bar.write(text) if self.training_bar is not None else logger.info(text)

            def on_log(self, args, state, control, logs=None, **kwargs):
                pass  # the values are in metrics.json and any tracker (--report_to)

            def on_train_end(self, args, state, control, **kwargs):
                self.training = False
                if self.training_bar is not None:
                    super().on_train_end(args, state, control, **kwargs)

        _QuietProgress = QuietProgress
    return _QuietProgress


_QuietProgress = None
