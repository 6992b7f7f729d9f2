"""The protocol of a fine-tuning method and its registry: a method is one class in one file, registered by name.

A method is switched on by its option (`option`: a weight above 0, a number of rounds, or `--adversarial NAME` for
an adversary), checks its own settings (`check`), says what it records (`settings`) and is built anew for every
round of every seed from a `MethodContext`. The trainer and the seed loop call its hooks, whichever methods are on:
- `forward_kwargs`: extra arguments of the training forward pass (hidden states for a loss on the representation);
- `loss(trainer, model, inputs, outputs, loss)`: the loss so far plus the method's terms (training passes only;
  terms are added, so methods combine in any order);
- `trainable_parameters(model)`: weights of its own for the optimizer (an auxiliary head), on the model's device;
- `training_step(step)`: run `step()` (forward and backward of the batch) as the method needs: again on perturbed
  embeddings (adversaries), leaving the gradient it wants and the weights exactly as they were;
- `next_round(trainer)`: after a round, the examples to add for another round (self-training), or None.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

from ...errors import UsageError

METHODS: dict[str, type[Method]] = {}


def register(cls: type[Method]) -> type[Method]:
    METHODS[cls.name] = cls
    return cls


@dataclass
class MethodContext:
    """What a method may read when it is built for one round of one seed."""

    model: object
    tokenizer: object
    args: object  # FinetuningArguments
    task: object  # tasks.Task
    seed: int
    max_length: int
    unlabeled: object | None = None  # unlabeled.UnlabeledPool, for the methods that read unlabeled text
    round: int = 0
    seed_dir: str | None = None
    source: str | None = None  # the checkpoint the model came from (a method may load more of it: an MLM head)


@dataclass
class Examples:
    """Examples a method adds to the next round's training set, with what the record says about them."""

    texts: list[str]
    labels: list[str]
    record: dict


class Method:
    name: ClassVar[str]
    option: ClassVar[str]  # the option that switches it on
    adversary: ClassVar[bool] = False  # chosen by --adversarial NAME; at most one is on
    needs_unlabeled: ClassVar[bool] = False
    task_types: ClassVar[tuple[str, ...]] = ("single_label", "multi_label", "token")
    forward_kwargs: ClassVar[dict] = {}

    @classmethod
    def enabled(cls, args) -> bool:
        value = getattr(args, cls.option)
        return value == cls.name if cls.adversary else bool(value)

    @classmethod
    def check(cls, args) -> None:
        """A UsageError for settings that cannot work together (bounds are checked when options are parsed)."""

    @classmethod
    def check_model(cls, source: str, config) -> None:
        """A UsageError when the checkpoint lacks what the method needs; called before anything is written."""

    @classmethod
    def settings(cls, args) -> dict:
        return {}

    @classmethod
    def build(cls, context: MethodContext) -> Method:
        return cls(context)

    def loss(self, trainer, model, inputs: dict, outputs, loss):
        return loss

    def training_step(self, step: Callable[[], object]):
        return step()

    def trainable_parameters(self, model) -> list:
        """Weights of the method's own that the optimizer trains beside `model`'s (an auxiliary head)."""
        return []

    def next_round(self, trainer) -> Examples | None:
        return None


def active(args) -> list[type[Method]]:
    return [cls for cls in METHODS.values() if cls.enabled(args)]


def check_methods(args, task_type: str | None = None) -> None:
    """Each method's own checks; with the task's type known, whether the method works on it."""
    for cls in active(args):
        cls.check(args)
        if task_type is not None and task_type not in cls.task_types:
            raise UsageError(
                f"--{cls.option}: {cls.name} trains {' and '.join(cls.task_types)} tasks, not a {task_type} task"
            )


def check_methods_model(args, source: str, config) -> None:
    """Each method's check of the checkpoint (`Method.check_model`)."""
    for cls in active(args):
        cls.check_model(source, config)


def needs_unlabeled(args) -> bool:
    return any(cls.needs_unlabeled for cls in active(args))


def method_settings(args) -> dict | None:
    """{method: its settings} of the methods switched on (None: plain fine-tuning), for results.json."""
    return {cls.name: cls.settings(args) for cls in active(args)} or None


def build_methods(context: MethodContext) -> list[Method]:
    return [cls.build(context) for cls in active(context.args)]


def kl_rows(target_log_probs, log_probs):
    """KL(p || q) of every row, from log p (the target) and log q: exactly 0 where the two are equal."""
    return (target_log_probs.exp() * (target_log_probs - log_probs)).sum(-1)
