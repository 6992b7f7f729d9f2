"""The optimizer recipe every training stage starts from: RoBERTa's, which Gururangan et al. (2020) kept for both
continued pretraining and fine-tuning. Stages subclass `RobertaRecipe` and change only what differs, with a reason."""

from __future__ import annotations

from dataclasses import dataclass, field

from transformers import TrainingArguments


@dataclass
class RobertaRecipe(TrainingArguments):
    # The intervals of inherited TrainingArguments options, checked before anything loads (config.check_bounds).
    BOUNDS = {
        "per_device_train_batch_size": "[1, inf)",
        "per_device_eval_batch_size": "[1, inf)",
        "gradient_accumulation_steps": "[1, inf)",
        "num_train_epochs": "[0, inf)",
        "adam_beta1": "[0, 1)",
        "adam_epsilon": "(0, inf)",
        "max_grad_norm": "[0, inf)",
        "warmup_steps": "[0, inf)",
    }

    # A warm-up over 6% of the steps: training starts from a trained model, so a short warm-up protects it from the
    # first large updates of a fresh optimizer state.
    warmup_steps: float = field(
        default=0.06, metadata={"help": "Linear warm-up: a ratio of all steps if < 1, else steps."}
    )
    # beta2 = 0.98 (not 0.999) makes Adam adapt faster, which RoBERTa found stabler with large batches.
    adam_beta2: float = field(default=0.98, metadata={"help": "Adam beta2.", "bounds": "[0, 1)"})
    # epsilon 1e-6 as in RoBERTa: a larger epsilon damps updates of rarely-seen (e.g. new-domain) embeddings.
    adam_epsilon: float = field(default=1e-6, metadata={"help": "Adam epsilon."})
    # Ours, not RoBERTa's: nothing a user made is overwritten without asking.
    overwrite_output_dir: bool = field(
        default=False,
        metadata={"help": "Write into a non-empty --output_dir (never done without this flag).", "fingerprint": False},
    )
    # Where a run writes, whether it resumes and whether it shows progress bars change none of its results: the
    # fingerprints of the caches (fingerprint.py) leave them out. Redeclared only to say so; TrainingArguments' own.
    output_dir: str | None = field(
        default=None,
        metadata={"help": "Where the run's outputs and checkpoints are written.", "fingerprint": False},
    )
    resume_from_checkpoint: str | None = field(
        default=None,
        metadata={"help": "A checkpoint directory to continue from, or `last` (the newest in --output_dir).",
                  "fingerprint": False},
    )  # fmt: skip
    disable_tqdm: bool | None = field(default=None, metadata={"help": "Hide the progress bars.", "fingerprint": False})
    # Ours: pinned memory only where it speeds up copies to a GPU (elsewhere torch warns on every run).
    dataloader_pin_memory: bool = field(
        default=True,
        metadata={"help": "Pin batches in page-locked memory, on CUDA only (faster copies to the GPU).",
                  "fingerprint": False},
    )  # fmt: skip

    def __post_init__(self):
        # TrainingArguments silently writes to ./trainer_output when no directory is given; our stages require one.
        self.output_dir_given = self.output_dir is not None
        super().__post_init__()
        import torch

        self.dataloader_pin_memory = self.dataloader_pin_memory and torch.cuda.is_available() and not self.use_cpu
