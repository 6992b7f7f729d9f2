"""Continued pretraining (DAPT on a domain corpus, TAPT on task text) of any Hugging Face masked or causal LM.

    dontstop pretrain --model_name_or_path roberta-base --train_file domain.jsonl --output_dir runs/dapt

What it adds to the `run_mlm.py` recipe: masks that are a pure function of (seed, epoch, example) so runs and resumes
are exact; the MLM head applied to masked positions only; packing without dropped tails; a cached tokenization;
detection of checkpoints without MLM-head weights (sentence encoders), whose fresh head is warmed up alone first;
padding-free batches and packed documents that do not attend to each other (`attention.py`);
evaluation of loss, perplexity and masked-token accuracy on every held-out set before, during and after training;
LoRA adapters (`adapters.py`); and an output directory with a model card and metrics that plain `transformers` (or,
for an adapter, `peft`) loads.

The package, one module per step: `args` (the options and their checks), `data` (corpora to examples), `freezing`
(the warm-ups' table of phases), `trainer` (the Trainer's overridden hooks), `card` (the model card) and
`pipeline` (load, build, train, save).
"""

from __future__ import annotations

from ..config import lazy_attribute
from .args import DataArguments, MaskingArguments, ModelArguments, PretrainingArguments

ARGUMENTS = (ModelArguments, DataArguments, MaskingArguments, PretrainingArguments)


def run(model_args, data_args, masking_args, training_args, callbacks=None):
    """The stage: see `pipeline.run_pretrain`."""
    from .pipeline import run_pretrain

    return run_pretrain(model_args, data_args, masking_args, training_args, callbacks)


def resume_options(directory: str) -> dict | None:
    """Options that continue an interrupted run in `directory`: from its last complete checkpoint, if any."""
    from ..checkpoints import last_complete_checkpoint

    return {"resume_from_checkpoint": "last"} if last_complete_checkpoint(directory) else None


def __getattr__(name: str):
    return lazy_attribute(__name__, name, ("pipeline", "freezing", "trainer"))


EXAMPLES = """examples:
  # DAPT: RoBERTa on a domain corpus, one pass, held-out domain and general losses tracked
  dontstop pretrain --model_name_or_path roberta-base --train_file domain.jsonl \\
      --eval_file general=books.jsonl --num_train_epochs 1 --output_dir runs/dapt

  # the same with replay: 10% of the training tokens from general text, 5% of it held out as 'general'
  dontstop pretrain --model_name_or_path roberta-base --train_file domain.jsonl \\
      --replay_file books.jsonl --replay_ratio 0.1 --num_train_epochs 1 --output_dir runs/dapt-replay

  # TAPT: many epochs over the task's own short texts, fresh masks each epoch
  dontstop pretrain --model_name_or_path runs/dapt --train_file task_train.jsonl --line_by_line \\
      --num_train_epochs 100 --output_dir runs/dapt-tapt

  # weight averaging: an EMA (or SWA over the last quarter at a constant rate) evaluated beside the raw weights,
  # saved in runs/dapt/ema (or runs/dapt/swa); metrics.json says which had the lower held-out loss
  dontstop pretrain --config dapt.yaml --ema 0.999
  dontstop pretrain --config dapt.yaml --swa_start 0.75 --swa_lr 5e-5

  # LoRA (peft): the pretrained weights stay frozen, the MLM head and any new token rows train; OUTPUT_DIR holds
  # the adapter (PeftModel.from_pretrained(base, OUTPUT_DIR)), OUTPUT_DIR/merged a plain model
  dontstop pretrain --config dapt.yaml --adapter lora --lora_r 16 --learning_rate 5e-4 --merge_adapter

  # on a GPU: bf16; short texts packed without padding; blocks whose documents do not attend to each other
  dontstop pretrain --config tapt.yaml --line_by_line --padding_free --bf16
  dontstop pretrain --config dapt.yaml --packing documents --bf16 --dataloader_num_workers 4

  # the same from a YAML file, with a CLI override; resume an interrupted run
  dontstop pretrain --config dapt.yaml --learning_rate 5e-5
  dontstop pretrain --config dapt.yaml --resume_from_checkpoint last

  # multi-GPU / multi-node: no code change
  accelerate launch --num_processes 8 -m dontstop pretrain --config dapt.yaml
  torchrun --nproc_per_node 8 -m dontstop pretrain --config dapt.yaml
"""
