"""Weight averaging as a Trainer callback: an exponential moving average (EMA) or stochastic weight averaging (SWA)
of the parameters, evaluated beside the raw weights.

    dontstop pretrain ... --ema 0.999            (--ema alone means 0.999)
    dontstop pretrain ... --swa_start 0.75 --swa_lr 2e-5
    dontstop finetune ... --swa_start 0.5

Both keep a `torch.optim.swa_utils.AveragedModel` of the parameters only (buffers such as BERT's integer position
ids must stay exact), in fp32 whatever the model's dtype (a bf16 checkpoint trains in bf16), updated in `on_step_end`,
after the optimizer step (once per accumulated batch), so each update sees new weights.

EMA: after every step avg = d * avg + (1 - d) * w. The decay warms up, d = min(decay, (1 + n) / (10 + n)) after n
updates, so a short run is not dominated by its first weights (0.999 ** 130 is still 0.88).

SWA (Izmailov et al., 2018): the equal-weight mean of snapshots of the weights taken every F optimizer steps after
step S, counted back from the last step T (T, T - F, T - 2F, ... > S), so the final weights are always in the
average. S is `--swa_start`: a step (0 averages the whole run) or a fraction of T (S = floor(fraction * T)). F is
`--swa_freq`, by default ceil((T - S) / 20): at most 20 evenly spaced snapshots whatever the length of the run, in
both stages (a pretraining run is often one epoch, so "once per epoch" would give a single snapshot; fine-tuning's
few epochs would give few). `--swa_lr` holds the learning rate at that constant value for every step after S (no
annealing towards it), by replacing the schedule's lambdas from S on: the logged rate is the one used, and a resumed
run holds it too. Without `--swa_lr` the schedule runs on and the average is taken over its tail.

Evaluation swaps the averaged parameters into the model and back (`swapped_in`), so training continues on the raw
weights. `dontstop pretrain` scores both on every held-out set (the averaged under `ema_eval_*` / `swa_eval_*`),
saves the averaged model in OUTPUT_DIR/ema or OUTPUT_DIR/swa (loadable with plain `from_pretrained`) and reports the
one with the lower loss on `validation` (`pretrain_report`). `dontstop finetune` scores the averaged weights (they
choose the best epoch and are kept) and the raw ones beside them (`raw_eval_*`). The average costs one more copy of
the parameters in memory (two while it is swapped in), and in every checkpoint (weight_average.pt), so that
`--resume_from_checkpoint` continues it exactly; resuming from a checkpoint without it (or with other averaging
settings) restarts the average from the resumed weights, with a warning.
"""

from __future__ import annotations

import logging
import math
import os
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from transformers import TrainerCallback

from .errors import UsageError
from .records import eval_name

logger = logging.getLogger(__name__)

CHECKPOINT_FILE = "weight_average.pt"
# SWA's default snapshot count: enough that the mean is not dominated by one snapshot's noise, few enough that
# snapshots are far apart (nearby weights add nothing).
SWA_SNAPSHOTS = 20


@dataclass
class AveragingArguments:
    """The weight-averaging options of both training stages, mixed into their `TrainingArguments`."""

    ema: float | None = field(
        default=None,
        metadata={
            "help": "Keep an exponential moving average of the weights with this decay, evaluated beside the raw "
            "weights; --ema alone means 0.999.",
            "nargs": "?",
            "const": 0.999,
        },
    )
    swa_start: str | None = field(
        default=None,
        metadata={
            "help": "Stochastic weight averaging: average snapshots of the weights taken after this step, or after "
            "this fraction of the training steps when in (0, 1) (e.g. 0.75)."
        },
    )
    swa_freq: int | None = field(
        default=None,
        metadata={
            "help": "SWA: steps between snapshots, counted back from the last step. Default: ceil(steps after "
            "--swa_start / 20), at most 20 snapshots."
        },
    )
    swa_lr: float | None = field(
        default=None,
        metadata={
            "help": "SWA: hold the learning rate at this constant value after --swa_start (default: the schedule "
            "runs on)."
        },
    )

    def check_averaging(self) -> None:
        """One-line UsageErrors for bad averaging options, before anything is loaded or written."""
        if self.ema is not None and not 0.0 <= self.ema < 1.0:
            raise UsageError(f"--ema {self.ema}: the decay must be in [0, 1)")
        if self.swa_start is None:
            for option in ("swa_freq", "swa_lr"):
                if getattr(self, option) is not None:
                    raise UsageError(f"--{option} needs --swa_start")
        else:
            if self.ema is not None:
                raise UsageError("--ema and --swa_start: choose one average")
            parse_swa_start(self.swa_start)
            if self.swa_freq is not None and self.swa_freq < 1:
                raise UsageError(f"--swa_freq {self.swa_freq}: must be at least 1 step")
            if self.swa_lr is not None and not self.swa_lr > 0:
                raise UsageError(f"--swa_lr {self.swa_lr}: must be positive")
            schedule = getattr(getattr(self, "lr_scheduler_type", None), "value", None)
            if self.swa_lr is not None and schedule == "reduce_lr_on_plateau":
                raise UsageError(
                    "--swa_lr holds a step-based schedule; --lr_scheduler_type reduce_lr_on_plateau is not"
                )
        # The average copies the parameters each process holds: with sharding, a shard's are not the model's.
        deepspeed = getattr(self, "hf_deepspeed_config", None) if getattr(self, "deepspeed", None) else None
        sharded = getattr(self, "fsdp", None) or (deepspeed is not None and deepspeed.is_zero3())
        if (self.ema is not None or self.swa_start is not None) and sharded:
            raise UsageError("weight averaging needs whole parameters on every process: not with --fsdp or ZeRO-3")

    def averager(self) -> WeightAverage | None:
        """The callback these options ask for, if any."""
        if self.ema is not None:
            return EMACallback(self.ema)
        if self.swa_start is not None:
            return SWACallback(parse_swa_start(self.swa_start), self.swa_lr, self.swa_freq)
        return None


def parse_swa_start(value) -> int | float:
    """`1000` is a step; `0.75` (a number with a point) is that fraction of the training steps, in (0, 1)."""
    text = str(value).strip()
    try:
        if isinstance(value, int) or text.lstrip("+-").isdigit():
            if int(text) >= 0:
                return int(text)
        elif 0.0 < float(text) < 1.0:
            return float(text)
    except ValueError:
        pass
    raise UsageError(f"--swa_start {value}: expected a step (0 or more) or a fraction of the training steps in (0, 1)")


def warmed_up_decay(decay: float, updates: int) -> float:
    return min(decay, (1.0 + updates) / (10.0 + updates))


class WeightAverage(TrainerCallback):
    """An `AveragedModel` of the parameters, updated after the optimizer steps `collects` picks, saved with every
    checkpoint and restored on resume; `swapped_in` lends its parameters to the model. A subclass names itself (the
    metrics prefix and the output subdirectory) and gives its schedule and averaging function."""

    name = "average"

    def __init__(self):
        self.averaged: torch.optim.swa_utils.AveragedModel | None = None
        self.updates = 0  # a Python int, so that no device synchronisation happens per step
        self.steps: list[int] = []  # SWA: the steps whose weights are in the average
        self.restored: bool | None = None  # on resume: whether the checkpoint's average was taken up

    @property
    def ready(self) -> bool:
        """Whether anything was averaged yet (before that, the raw weights are all there is)."""
        return self.updates > 0

    def settings(self) -> dict:
        raise NotImplementedError

    def collects(self, state) -> bool:
        return True

    def average_fn(self):
        """A `multi_avg_fn` for `AveragedModel`; None is its equal-weight running mean."""
        return None

    def collected(self, state) -> None:
        """Called after each update."""

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        from torch.optim.swa_utils import AveragedModel

        self.averaged = AveragedModel(model, multi_avg_fn=self.average_fn(), use_buffers=False)
        # The average in fp32 whatever the model's dtype: in bf16, (1 - decay) x a change is mostly below one unit of
        # the last place, and the EMA would stop moving.
        for param in self.averaged.module.parameters():
            if param.is_floating_point():
                param.data = param.data.float()
        self.updates, self.steps = 0, []
        if state is not None and state.global_step > 0:
            self._restore(args, state)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if self.collects(state):
            self.averaged.update_parameters(model)  # the first update copies the weights
            self.updates += 1
            self.collected(state)

    def save(self, folder: str) -> None:
        """Write the average into a checkpoint folder, so that a resumed run continues it exactly."""
        if self.averaged is None:
            return
        saved = {
            "method": self.name,
            "settings": self.settings(),
            "updates": self.updates,
            "steps": self.steps,
            "parameters": [p.detach().cpu() for p in self.averaged.module.parameters()],
        }
        torch.save(saved, os.path.join(folder, CHECKPOINT_FILE))

    def on_save(self, args, state, control, **kwargs):
        # A trainer with atomic checkpoints (checkpoints.py) has saved the average inside the checkpoint already.
        from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

        folder = os.path.join(args.output_dir, f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}")
        if (
            state.is_world_process_zero
            and os.path.isdir(folder)
            and not os.path.exists(os.path.join(folder, CHECKPOINT_FILE))
        ):
            self.save(folder)

    def _restore(self, args, state) -> None:
        from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

        resumed = args.resume_from_checkpoint if isinstance(args.resume_from_checkpoint, str) else None
        folders = [resumed, os.path.join(args.output_dir, f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}")]
        paths = [os.path.join(f, CHECKPOINT_FILE) for f in folders if f]
        path = next((p for p in paths if os.path.isfile(p)), None)
        saved = torch.load(path, weights_only=True) if path else None
        if saved is None or saved["method"] != self.name or saved["settings"] != self.settings():
            logger.warning(
                "Resuming at step %d from a checkpoint without this run's %s average (%s): the average restarts "
                "from the resumed weights",
                state.global_step,
                self.name.upper(),
                "none saved" if saved is None else "other settings",
            )
            self.restored = False
            return
        with torch.no_grad():
            for target, value in zip(self.averaged.module.parameters(), saved["parameters"], strict=True):
                target.copy_(value)
        self.averaged.n_averaged.fill_(saved["updates"])
        self.updates, self.steps = saved["updates"], list(saved["steps"])
        self.restored = True

    @contextmanager
    def swapped_in(self, model: torch.nn.Module):
        """Inside the block, `model` holds the averaged parameters (if anything was averaged yet); on leaving, its
        own are back."""
        if not self.ready:
            yield
            return
        live = [p.detach().clone() for p in model.parameters()]
        with torch.no_grad():
            for target, average in zip(model.parameters(), self.averaged.module.parameters(), strict=True):
                target.copy_(average)
        try:
            yield
        finally:
            with torch.no_grad():
                for target, saved in zip(model.parameters(), live, strict=True):
                    target.copy_(saved)


class EMACallback(WeightAverage):
    """An exponential moving average of the parameters, updated after every optimizer step, its decay warmed up."""

    name = "ema"

    def __init__(self, decay: float):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        super().__init__()
        self.decay = decay

    def settings(self) -> dict:
        return {"decay": self.decay}

    def average_fn(self):
        return self._average

    def _average(self, averaged: list[torch.Tensor], current: list[torch.Tensor], num_averaged) -> None:
        weight = 1.0 - warmed_up_decay(self.decay, self.updates)
        for a, c in zip(averaged, current, strict=True):
            a.lerp_(c.to(a.dtype), weight)


class SWACallback(WeightAverage):
    """Stochastic weight averaging: the equal-weight mean of snapshots every `every` steps after step `start`,
    counted back from the last step; `lr`, if given, is the learning rate of every step after `start`."""

    name = "swa"

    def __init__(self, start: int | float, lr: float | None = None, every: int | None = None):
        super().__init__()
        self.start_spec, self.every_spec, self.lr = start, every, lr
        self.start: int | None = None
        self.every: int | None = None
        self.last: int | None = None

    def settings(self) -> dict:
        return {"start_step": self.start, "every": self.every, "last_step": self.last, "lr": self.lr}

    def on_train_begin(self, args, state, control, model=None, lr_scheduler=None, **kwargs):
        self.last = state.max_steps
        self.start = swa_start_step(self.start_spec, self.last)
        if self.start >= self.last:
            raise UsageError(
                f"--swa_start {self.start_spec}: step {self.start} leaves none of the {self.last} training steps to "
                "average"
            )
        self.every = self.every_spec or math.ceil((self.last - self.start) / SWA_SNAPSHOTS)
        if self.lr is not None:
            hold_learning_rate(lr_scheduler, self.start, self.lr)
        super().on_train_begin(args, state, control, model=model, **kwargs)
        logger.info(
            "SWA: a snapshot every %d steps after step %d, up to step %d%s",
            self.every,
            self.start,
            self.last,
            f"; learning rate {self.lr} after step {self.start}" if self.lr is not None else "",
        )

    def collects(self, state) -> bool:
        step = state.global_step
        return self.start < step <= self.last and (self.last - step) % self.every == 0

    def collected(self, state) -> None:
        self.steps.append(state.global_step)


def swa_start_step(start: int | float, total_steps: int) -> int:
    return int(start * total_steps) if isinstance(start, float) else start


def hold_learning_rate(scheduler, start: int, lr: float) -> None:
    """Make `scheduler` give the learning rate `lr` to every optimizer step after step `start`.

    Every Trainer schedule but reduce_lr_on_plateau is a LambdaLR, whose rate for the next step is base * lambda(n)
    after n steps; lambda(n >= start) becomes lr / base. The scheduler state saved in checkpoints holds no plain
    function, so a resumed run gets the original lambdas, and this callback replaces them again."""
    if not isinstance(scheduler, torch.optim.lr_scheduler.LambdaLR):
        raise UsageError(f"--swa_lr needs a step-based schedule (a LambdaLR), not {type(scheduler).__name__}")

    def held(schedule, base):
        factor = lr / base if base else 0.0
        return lambda step: factor if step >= start else schedule(step)

    scheduler.lr_lambdas = [held(f, b) for f, b in zip(scheduler.lr_lambdas, scheduler.base_lrs, strict=True)]
    # The next step's rate follows the new lambdas at once (--swa_start 0, or a run resumed after the start).
    rates = [base * f(scheduler.last_epoch) for base, f in zip(scheduler.base_lrs, scheduler.lr_lambdas, strict=True)]
    for group, rate in zip(scheduler.optimizer.param_groups, rates, strict=True):
        group["lr"] = rate
    scheduler._last_lr = rates


def pretrain_report(averager: WeightAverage, after: dict | None, held_out: list[str]) -> dict:
    """The averaging record for metrics.json. Moves the averaged weights' metrics out of `after` (the final
    evaluation, whose `ema_`/`swa_`-prefixed keys they are), so `after` is the raw weights' as without averaging.

    The better weights are those with the lower loss on the first held-out set: `validation` (the domain's own
    held-out text) when there is one, else the first --eval_file; a tie goes to the raw weights, the simpler."""
    prefix = f"{averager.name}_"
    averaged = {k[len(prefix) :]: after.pop(k) for k in list(after or {}) if k.startswith(prefix)}
    record = {"method": averager.name, **averager.settings(), "updates": averager.updates}
    if averager.steps:
        record["snapshot_steps"] = averager.steps
    if averager.restored is not None:
        record["restored_on_resume"] = averager.restored
    compared = "validation" if "validation" in held_out else (held_out[0] if held_out else None)
    key = eval_name(compared) if compared else None
    better = None
    if key in averaged:
        better = averager.name if averaged[key] < after[key] else "raw"
        logger.info(
            "Held-out %s loss: raw %.4f, %s %.4f; better: %s",
            compared,
            after[key],
            averager.name.upper(),
            averaged[key],
            better,
        )
    record.update(
        directory=averager.name if averager.ready else None,
        after=averaged or None,
        compared_on=compared if better else None,
        better=better,
    )
    return record
