"""The options of the training methods of `dontstop finetune` (`methods/`): a group per method, all off by default."""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from .methods import METHODS, needs_unlabeled

ADVERSARIAL = ["none", *(name for name, cls in METHODS.items() if cls.adversary)]


@dataclass
class MethodArguments:
    # --- adversarial training (methods/fgm.py, pgd.py, freelb.py) ---
    adversarial: str = field(
        default="none",
        metadata={
            "help": "Adversarial training on the word embeddings: fgm (one step on the embedding matrix), pgd "
            "(--adv_steps projected steps on it), freelb (--adv_steps steps on each example's embeddings, their "
            "gradients averaged).",
            "choices": ADVERSARIAL,
        },
    )
    adv_epsilon: float = field(
        default=1.0,
        metadata={"bounds": "(0, inf)", "help": "FGM: norm of the perturbation; PGD, FreeLB: radius of its ball."},
    )
    adv_steps: int = field(default=3, metadata={"bounds": "[1, inf)", "help": "PGD, FreeLB: ascent steps (K)."})
    adv_alpha: float = field(
        default=0.3, metadata={"bounds": "(0, inf)", "help": "PGD, FreeLB: the norm of each ascent step."}
    )
    # --- R-Drop (methods/rdrop.py) ---
    rdrop_alpha: float = field(
        default=0.0,
        metadata={
            "bounds": "[0, inf)",
            "help": "R-Drop: weight of the symmetric KL between two dropout passes of each batch (0: off).",
        },
    )
    # --- supervised contrastive learning (methods/contrastive.py) ---
    contrastive_weight: float = field(
        default=0.0,
        metadata={
            "bounds": "[0, inf)",
            "help": "Weight of a supervised contrastive (SupCon) term on the first token's final hidden state "
            "(Gunel et al. 2021); 0: off.",
        },
    )
    contrastive_temperature: float = field(
        default=0.3, metadata={"bounds": "(0, inf)", "help": "Temperature of the contrastive term."}
    )
    # --- an auxiliary masked-LM loss (methods/mlm.py) ---
    mlm_weight: float = field(
        default=0.0,
        metadata={
            "bounds": "[0, inf)",
            "help": "Weight of an auxiliary masked-LM loss on the training batches' text (15%% of its tokens "
            "masked, the checkpoint's own MLM head trained alongside; TAPT's cheap cousin); 0: off.",
        },
    )
    # --- UDA (methods/uda.py) ---
    uda_weight: float = field(
        default=0.0,
        metadata={
            "bounds": "[0, inf)",
            "help": "UDA: weight of the consistency loss KL(p(x) || p(augment(x))) on unlabeled text (0: off).",
        },
    )
    unlabeled_ratio: float = field(
        default=3.0, metadata={"bounds": "(0, inf)", "help": "UDA: unlabeled examples per labelled one in a step."}
    )
    uda_temperature: float = field(
        default=1.0,
        metadata={"bounds": "(0, inf)", "help": "UDA: softmax temperature of the target p(x) (< 1 sharpens it)."},
    )
    uda_confidence: float | None = field(
        default=None,
        metadata={
            "bounds": "(0, 1]",
            "help": "UDA: only unlabeled examples whose top probability is at least this count (default: all).",
        },
    )
    uda_augmentation: str = field(
        default="delete:0.1,swap:0.1",
        metadata={"help": "UDA: the augmentation, e.g. delete:0.1,swap:0.1, cutoff:0.2 or dropout (augment/ops.py)."},
    )
    tsa: str = field(
        default="none",
        metadata={
            "help": "UDA: training-signal annealing: labelled examples predicted above a threshold rising from "
            "1/labels to 1 (linearly, exp or log over the steps) leave the supervised loss.",
            "choices": ["none", "linear", "exp", "log"],
        },
    )
    # --- self-training (methods/self_training.py) ---
    self_training_rounds: int = field(
        default=0,
        metadata={
            "bounds": "[0, inf)",
            "help": "Self-training: rounds in which the best model so far pseudo-labels the unlabeled text and a "
            "student trains again from the checkpoint on labelled + pseudo-labelled examples (0: off).",
        },
    )
    pseudo_label_threshold: float | None = field(
        default=None,
        metadata={"bounds": "(0, 1]", "help": "Self-training: keep pseudo-labels with at least this probability."},
    )
    pseudo_label_top_k: int | None = field(
        default=None,
        metadata={
            "bounds": "[1, inf)",
            "help": "Self-training: keep the K most confident pseudo-labels of each class per round (round r "
            "keeps r x K).",
        },
    )
    self_training_noise: str = field(
        default="dropout",
        metadata={"help": "Self-training: noise on the student's pseudo-labelled texts: dropout, or e.g. delete:0.1."},
    )


def reads_unlabeled(options: dict, where: str) -> bool:
    """Whether fine-tuning with `options` (a mapping, as an experiment gives them) reads unlabeled text."""
    from ..config import build_arguments

    names = {f.name for f in fields(MethodArguments)}
    (args,) = build_arguments((MethodArguments,), {k: v for k, v in options.items() if k in names}, where)
    return needs_unlabeled(args)
