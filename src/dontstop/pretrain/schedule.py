"""The learning-rate schedule of a run that starts with a head warm-up: two schedules, one after the other.

Under the one schedule of the whole run, a head warm-up of the first steps trained at the bottom of the run's
linear warm-up: with 10 steps in all, its single step ran at learning rate 0 and the "after head warm-up" loss
equalled the loss before. Here the warm-up phase has its own rate (`--head_warmup_learning_rate`) and its own short
linear ramp that starts above 0, and the run's own schedule (warm-up, decay) starts when the phase ends, over the
steps that remain.
"""

from __future__ import annotations

import logging

from torch.optim.lr_scheduler import LambdaLR
from transformers import get_scheduler

logger = logging.getLogger(__name__)

MIN_HEAD_WARMUP_STEPS = 10  # fewer steps barely move a fresh head; raised to this, never past half the run


def head_warmup_length(steps: int, total: int) -> int:
    """`steps` raised to the minimum (with a note) but never past half of the `total` steps."""
    floor = min(MIN_HEAD_WARMUP_STEPS, total // 2)
    if 0 < steps < floor:
        logger.info("Head warm-up of %d steps raised to %d: fewer barely move a fresh head", steps, floor)
        return floor
    return steps


def phased_scheduler(optimizer, args, total: int, phase_steps: int, phase_learning_rate: float) -> LambdaLR | None:
    """A warm-up phase of `phase_steps` at `phase_learning_rate` (ramped up over its first tenth, from above 0),
    then the run's own schedule over the remaining steps. None where the run's schedule is not a `LambdaLR`
    (reduce-on-plateau), which then runs unchanged."""
    rest = max(total - phase_steps, 1)
    main = get_scheduler(
        args.lr_scheduler_type,
        optimizer=optimizer,
        num_warmup_steps=args.get_warmup_steps(rest),
        num_training_steps=rest,
        scheduler_specific_kwargs=args.lr_scheduler_kwargs,
    )
    if not isinstance(main, LambdaLR) or len(set(main.lr_lambdas)) != 1:  # one function for every group
        return None
    after = main.lr_lambdas[0]
    ramp = max(1, phase_steps // 10)
    # Factors multiply each group's `initial_lr` (--learning_rate, as the first scheduler recorded it). A run at
    # --learning_rate 0 (an identity check) still warms its head up: the phase's rate becomes the reference, and
    # everything after it is multiplied by 0.
    ratio, later = (phase_learning_rate / args.learning_rate, 1.0) if args.learning_rate > 0 else (1.0, 0.0)
    if args.learning_rate == 0:
        for group in optimizer.param_groups:
            group["initial_lr"] = phase_learning_rate

    def factor(step: int) -> float:
        if step < phase_steps:
            return ratio * min(1.0, (step + 1) / (ramp + 1))
        return later * after(step - phase_steps)

    return LambdaLR(optimizer, factor)
