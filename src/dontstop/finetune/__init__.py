"""Fine-tune any checkpoint on a labelled task over several seeds; report dev and test metrics as mean ± std.

    dontstop finetune --model_name_or_path runs/dapt --train_file train.jsonl --validation_file dev.jsonl \
        --test_file test.jsonl --seeds 5 --output_dir runs/dapt-finetuned

Single-seed fine-tuning results are noise: Gururangan et al. (2020) report mean and standard deviation over five
seeds. Each seed here trains a fresh classifier, evaluates on the dev set after every epoch, stops early when the dev
metric has not improved for `--early_stopping_patience` evaluations, and scores the best epoch's weights (kept in
memory, not in checkpoints) on dev and test. `dontstop compare` then sets runs side by side with significance.

The model may be a LoRA adapter directory (`dontstop pretrain --adapter lora`): its base model is loaded and the
adapter merged in, then trained whole or, with `--adapter lora`, under a fresh task adapter (see `adapters.py`).

Training methods beyond plain fine-tuning are plug-ins (`methods/`), each switched on by its option and combinable:
adversarial training (FGM, PGD, FreeLB), R-Drop, a supervised contrastive term, an auxiliary masked-LM loss on the
task text (`--mlm_weight`), and, on unlabeled text (`--unlabeled_file`, `--unlabeled_from_train`; `unlabeled.py`),
UDA and self-training. Prompt-based fine-tuning (`--prompt`, `--verbalizer` JSON or `auto`; `methods/prompt.py`,
`methods/auto_verbalizer.py`) scores label words with the checkpoint's MLM head. `--tasks tasks.yaml` or repeated
`--task NAME=TRAIN[,DEV[,TEST]]` train one encoder on several tasks (`--task_sampling`; `multitask/`).
"""

from __future__ import annotations

from ..config import lazy_attribute
from .args import FinetuningArguments, TaskArguments, parse_seeds  # noqa: F401  (the API)

ARGUMENTS = (TaskArguments, FinetuningArguments)


def run(task_args, args):
    """The stage: see `pipeline.run_finetune`."""
    from .pipeline import run_finetune

    return run_finetune(task_args, args)


def resume_options(directory: str) -> dict | None:
    """Options that continue an interrupted run in `directory`: its finished seeds are reused (once it has written
    its settings; before that, there is nothing to continue)."""
    import os

    if not os.path.isfile(os.path.join(directory, "dontstop_config.json")):
        return None
    return {"resume": True, "overwrite_output_dir": True}


def __getattr__(name: str):
    return lazy_attribute(__name__, name, ("pipeline", "seeds", "trainer"))


EXAMPLES = """examples:
  # the paper's protocol: 5 seeds, best epoch on dev, test mean ± std
  dontstop finetune --model_name_or_path runs/dapt --train_file train.jsonl --validation_file dev.jsonl \\
      --test_file test.jsonl --seeds 5 --output_dir runs/dapt-ft

  # few-shot (200 examples drawn stratified per seed), with competition tricks
  dontstop finetune --model_name_or_path roberta-base --train_file train.jsonl --validation_file dev.jsonl \\
      --test_file test.jsonl --train_limit 200 --adversarial fgm --ema 0.999 --output_dir runs/base-ft

  # SWA over the second half of the epochs; results.json sets its dev scores beside the raw weights'
  dontstop finetune --model_name_or_path runs/dapt --train_file train.jsonl --validation_file dev.jsonl \\
      --test_file test.jsonl --swa_start 0.5 --output_dir runs/dapt-ft-swa

  # a LoRA task adapter (frozen model, higher learning rate) on a LoRA domain adapter from `dontstop pretrain`,
  # which is merged into its base first; kept models get the task adapter and, merged, a plain model
  dontstop finetune --model_name_or_path runs/dapt-lora --adapter lora --learning_rate 5e-4 \\
      --train_file train.jsonl --validation_file dev.jsonl --test_file test.jsonl \\
      --keep_models --merge_adapter --output_dir runs/dapt-lora-ft

  # 10 labels per class and much unlabeled text: UDA (consistency under word deletion and swap), then
  # self-training (2 rounds of 10 pseudo-labels per class and round), PGD, R-Drop; each alone or combined
  dontstop finetune --model_name_or_path runs/tapt --train_file train.jsonl --validation_file dev.jsonl \
      --test_file test.jsonl --train_limit_per_class 10 --unlabeled_file pool.jsonl --unlabeled_from_train \
      --uda_weight 1.0 --unlabeled_ratio 3 --tsa linear --output_dir runs/tapt-uda
  dontstop finetune ... --unlabeled_from_train --self_training_rounds 2 --pseudo_label_top_k 10 --output_dir runs/st
  dontstop finetune ... --adversarial pgd --adv_steps 3 --adv_alpha 0.3 --rdrop_alpha 1.0 --output_dir runs/pgd-rdrop

  # prompt-based, the label words chosen by the MLM head (written to OUTPUT_DIR/verbalizer.json), with an
  # auxiliary masked-LM loss on the task text
  dontstop finetune --model_name_or_path runs/tapt --prompt "{text} This package is about {mask}." \
      --verbalizer auto --mlm_weight 0.5 --train_file train.jsonl --validation_file dev.jsonl --output_dir runs/auto

  # multi-task: one encoder, a head per task, batches drawn by the square root of the tasks' sizes
  dontstop finetune --model_name_or_path runs/dapt --tasks tasks.yaml --task_sampling sqrt --output_dir runs/multi
  dontstop finetune --model_name_or_path runs/dapt --task topic=t/train.jsonl,t/dev.jsonl \
      --task tags=g/train.jsonl,g/dev.jsonl --output_dir runs/two-tasks

  # token classification (jsonl records {"text": [words], "label": [BIO tags]}), entity F1
  dontstop finetune --model_name_or_path bert-base-cased --train_file ner_train.jsonl \\
      --validation_file ner_dev.jsonl --test_file ner_test.jsonl --output_dir runs/ner

  # then: dontstop compare runs/base-ft runs/dapt-ft
"""
