"""What every fine-tuning needs before its seeds: the task read (a dev split held out if none is given), the
tokenizer and config, the splits encoded, and a model whose fresh task head the seed fixes."""

from __future__ import annotations

import functools
import logging
import os

from transformers import set_seed

from ..adapters import is_adapter_model
from ..errors import UsageError
from ..models import load_config, load_pretrained, load_tokenizer, read_adapter, resolve_model_path, tokenizer_source
from ..tasks import Encoded, Task, encode, load_task, stratified_sample
from .args import FinetuningArguments, TaskArguments, check_task_options
from .methods import check_methods

logger = logging.getLogger(__name__)

PROBLEM_TYPES = {"single_label": "single_label_classification", "multi_label": "multi_label_classification"}


def load_tokenizer_and_config(task_args: TaskArguments, task: Task, args: FinetuningArguments | None = None):
    """(resolved model path, tokenizer, config for the task); `args` are read by --verbalizer auto (its batch size and
    the first seed's few-shot draw)."""
    source = resolve_model_path(task_args.model_name_or_path)
    at = tokenizer_source(source, task_args.tokenizer_name)
    tokenizer = load_tokenizer(at, shown=source)
    if task.task_type == "token" and getattr(tokenizer, "add_prefix_space", True) is False:
        # Byte-level BPE (RoBERTa, GPT-2) spells a word differently after a space; words of a sentence are.
        tokenizer = load_tokenizer(at, shown=source, add_prefix_space=True)
    config = load_config(
        source,
        num_labels=len(task.labels),
        id2label=dict(enumerate(task.labels)),
        label2id=task.label2id,
        problem_type=PROBLEM_TYPES.get(task.task_type),
    )
    if getattr(config, "pad_token_id", None) is None:
        config.pad_token_id = tokenizer.pad_token_id
    if task.task_type == "token" and not getattr(tokenizer, "is_fast", False):
        raise UsageError(f"{source}: token classification needs a fast tokenizer (to map sub-tokens to words)")
    if task_args.prompt:
        config.prompt = task_prompt(task_args, task, tokenizer, source, config, args)
    return source, tokenizer, config


def task_prompt(task_args: TaskArguments, task: Task, tokenizer, source: str, config, args=None) -> dict:
    """--prompt and --verbalizer checked against the task and tokenizer (`methods/prompt.py`), as kept in the model's
    config; with --verbalizer auto, the words chosen by the checkpoint's MLM head (`methods/auto_verbalizer.py`)."""
    from .methods.auto_verbalizer import is_auto
    from .methods.prompt import build_prompt

    if task.task_type == "token":
        raise UsageError("--prompt is for single_label and multi_label tasks, not token classification")
    columns = {task_args.text_column: "text"}
    if task_args.text_pair_column:
        columns[task_args.text_pair_column] = "pair"
    verbalizer, chosen_by = task_args.verbalizer, None
    if is_auto(verbalizer):
        verbalizer, chosen_by = auto_verbalizer(task_args, task, tokenizer, source, config, columns, args)
    prompt = build_prompt(task_args.prompt, verbalizer, task.labels, columns, tokenizer,
                          task_args.allow_multi_token)  # fmt: skip
    prompt.chosen_by = chosen_by
    return prompt.to_dict()


def auto_verbalizer(task_args: TaskArguments, task: Task, tokenizer, source: str, config, columns: dict, args=None):
    """({label: [word]}, the record of the choice): LM-BFF's selection on the first seed's training examples."""
    from .args import parse_seeds
    from .methods.auto_verbalizer import choose_verbalizer
    from .seeds import drawn_indices

    first_seed = parse_seeds(task_args.seeds, args.seed if args is not None else 42)[0]
    examples = drawn_indices(task, task_args, first_seed)
    batch_size = args.per_device_eval_batch_size if args is not None else 64
    return choose_verbalizer(source, task, tokenizer, task_args.prompt, columns, list(examples),
                             task_args.auto_verbalizer_candidates, sequence_limit(task_args, tokenizer, config),
                             batch_size)  # fmt: skip


def prompt_summary(config) -> dict | None:
    """For results.json: the template, verbalizer and scoring rule of a prompt-based run (None for a head), and with
    --verbalizer auto how the words were chosen."""
    prompt = getattr(config, "prompt", None)
    if not prompt:
        return None
    summary = {k: prompt[k] for k in ("template", "verbalizer", "slots", "scoring")}
    return {**summary, "chosen_by": prompt["chosen_by"]} if prompt.get("chosen_by") else summary


def initialise_new_weights(model, names: list[str], seed: int, head: str | None = None) -> None:
    """Initialise afresh the modules holding `names`, each from a generator seeded by (seed, module name), and by
    `head` where given.

    The paired design: seed s must give every arm the same head, whatever else its checkpoint lacked or held (the
    library draws new weights from one stream, in an order that depends on which are missing). `head` tells apart
    the heads of one multi-task model: without it every task's `classifier` would start as the same rows, and the
    shared encoder, trained to raise one task's rows, raises the other's first rows with them."""
    import hashlib

    import torch

    for module_name in sorted({name.rsplit(".", 1)[0] for name in names}):
        key = f"{seed}:{module_name}" if head is None else f"{seed}:{head}:{module_name}"
        digest = hashlib.sha256(key.encode()).digest()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int.from_bytes(digest[:8], "little"))
            model._init_weights(model.get_submodule(module_name))


def load_seeded_model(
    task: Task, source: str, config, seed: int, args: FinetuningArguments | None = None, head: str | None = None
):
    """(the checkpoint with a task head whose initialisation `seed` (and `head`, see `initialise_new_weights`)
    fixes, the names of the weights initialised afresh); a broken checkpoint is a UsageError.

    From an adapter directory: its base model with the adapter merged in (this in-memory copy only). With
    `--adapter lora` in `args`: wrapped in a fresh task adapter, under which everything loaded stays frozen."""
    from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification

    if getattr(config, "prompt", None):  # the checkpoint's own MLM head scores the label words: nothing new
        from .methods.prompt_model import load_prompt_model

        return load_prompt_model(source, config, seed), []
    auto = AutoModelForTokenClassification if task.task_type == "token" else AutoModelForSequenceClassification
    set_seed(seed)
    model, info = load_pretrained(auto, source, config=config, ignore_mismatched_sizes=True)
    mismatched = {key if isinstance(key, str) else key[0] for key in info.get("mismatched_keys") or []}
    new = sorted(set(info["missing_keys"]) | mismatched)
    if not new:
        logger.warning(
            "%s already holds a %d-label head: it is fine-tuned further, not initialised afresh",
            source,
            len(task.labels),
        )
    initialise_new_weights(model, new, seed, head)
    if args is not None and args.uses_adapter:
        from ..adapters import add_task_adapter

        model = add_task_adapter(model, args, task.task_type, set(new))
    return model, new


def adapter_record(source: str, model) -> dict | None:
    """For results.json: the domain adapter merged in (if the model was one) and the task adapter (if any)."""
    from ..adapters import adapter_report

    domain = read_adapter(source) if os.path.isdir(source) else None
    task = adapter_report(model) if model is not None and is_adapter_model(model) else None
    if domain is None and task is None:
        return None
    return {"domain": {"path": domain.path, "base": domain.base} if domain else None, "task": task}


def read_task(task_args: TaskArguments, args: FinetuningArguments) -> Task:
    columns = dict(
        text_column=task_args.text_column,
        label_column=task_args.label_column,
        text_pair_column=task_args.text_pair_column,
        label_separator=task_args.label_separator,
        label_type=task_args.label_type,
    )
    task = load_task(
        task_args.train_file, task_args.validation_file, task_args.test_file, task_args.task_type,
        task_args.validation_split_percentage, **columns,
    )  # fmt: skip
    if task.task_type == "token" and task_args.text_pair_column:
        raise UsageError("--text_pair_column is for sequence tasks, not token classification")
    if task_args.validation_limit:
        # A fixed draw (seed 0), so every seed and every run being compared is scored on the same dev examples.
        task.dev = task.dev.subset(stratified_sample(task.dev.labels, task_args.validation_limit, seed=0))
    check_task_options(task, args)  # the metric too: an unknown one fails now, not after the first epoch
    check_methods(args, task.task_type)
    return task


def sequence_limit(task_args: TaskArguments, tokenizer, config) -> int:
    """--max_seq_length, or min(512, what the model takes); checked against what the model takes."""
    limit = getattr(config, "max_position_embeddings", None) or 512
    if tokenizer.model_max_length < 1_000_000:  # "no limit" is a huge sentinel; RoBERTa's 514 positions hold 512
        limit = min(limit, tokenizer.model_max_length)
    max_length = task_args.max_seq_length or min(512, limit)
    if not 2 < max_length <= limit:
        raise UsageError(f"--max_seq_length {max_length}: the model takes 3 to {limit} tokens")
    return max_length


def encode_splits(task: Task, task_args: TaskArguments, tokenizer, config) -> tuple[dict[str, Encoded], int, dict]:
    """({split: encoded examples}, the sequence length they were cut to, {split: what knowledge was appended})."""
    max_length = sequence_limit(task_args, tokenizer, config)
    splits = {"train": task.train, "dev": task.dev, "test": task.test}
    knowledge = task_knowledge(task, task_args, tokenizer, max_length)
    text_length = max_length - (task_args.room(max_length) if knowledge else 0)
    encoder = encode
    if getattr(config, "prompt", None):  # each example in the template; only its texts are cut to fit
        from .methods.prompt import encode_split

        encoder = functools.partial(encode_split, prompt=config.prompt)
    encoded = {name: encoder(task, split, tokenizer, text_length) for name, split in splits.items() if split}
    expanded = {}
    if knowledge is not None:
        from ..knowledge.expand import expand_dataset

        for name, split in encoded.items():
            split.dataset, expanded[name] = expand_dataset(split.dataset, knowledge, max_length)
            logger.info("%s: %d of %d examples with knowledge (%d terms)", name, expanded[name]["examples_with_terms"],
                        expanded[name]["examples"], expanded[name]["terms_expanded"])  # fmt: skip
    return encoded, max_length, expanded


def task_knowledge(task: Task, task_args: TaskArguments, tokenizer, max_length: int):
    """The glossary's and triples' terms for this task (--glossary, --triples), or None."""
    if not task_args.uses_knowledge:
        return None
    from ..tokenization import Framing

    task_args.check_knowledge(max_length)
    if task.task_type == "token":
        raise UsageError("--glossary/--triples are for sequence tasks, not token classification")
    if tokenizer.padding_side != "right":
        raise UsageError(f"--glossary/--triples: {tokenizer.name_or_path} pads on the left; appended knowledge "
                         "needs padding on the right")  # fmt: skip
    return task_args.knowledge(tokenizer, Framing.from_tokenizer(tokenizer).separator)
