"""Helpers the test modules share: tasks and runs of `dontstop finetune`, `dontstop pretrain` and `dontstop vocab
extend` on the tiny models of conftest.py. (Fixtures live in conftest.py; no test module imports another.)"""

from __future__ import annotations

import json
import os
import random

import torch
from conftest import WORDS, synthetic_documents, write_jsonl
from safetensors.torch import load_file
from transformers import (
    AlbertConfig,
    AutoModelForMaskedLM,
    AutoTokenizer,
    BertConfig,
    DebertaV2Config,
    DistilBertConfig,
    ModernBertConfig,
    RobertaConfig,
    TrainerCallback,
    XLMRobertaConfig,
)

# --- fine-tuning ------------------------------------------------------------------------------------------------

# Two classes a tiny model separates in a few epochs: each text draws its words from one half of the vocabulary.
HALVES = {"system": WORDS[:20], "network": WORDS[24:44]}


def separable_task(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = ("system", "network")[i % 2]
        rows.append({"text": " ".join(rng.choices(HALVES[label], k=rng.randint(4, 10))), "label": label})
    return rows


# Two classes with no word in common: a classifier on any embedding of them separates them, so a flipped label stands
# out (`dontstop clean`).
DISJOINT = {"system": list(dict.fromkeys(WORDS))[:20], "network": list(dict.fromkeys(WORDS))[21:41]}


def flipped_task(n: int, seed: int, flip: int | None = 7) -> list[dict]:
    """`n` examples alternating between two disjoint classes, the label of example `flip` (line flip + 1) wrong."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = ("system", "network")[i % 2]
        rows.append({"text": " ".join(rng.choices(DISJOINT[label], k=rng.randint(5, 9))), "label": label})
    if flip is not None:
        rows[flip]["label"] = "network" if rows[flip]["label"] == "system" else "system"
    return rows


def write_rows(path, rows) -> str:
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    return str(path)


def finetune_args(model, files, output_dir, *extra):
    return [
        "--model_name_or_path",
        model,
        "--train_file",
        files["train"],
        "--validation_file",
        files["dev"],
        *(["--test_file", files["test"]] if "test" in files else []),
        "--output_dir",
        str(output_dir),
        "--max_seq_length",
        "32",
        "--learning_rate",
        "3e-3",
        "--num_train_epochs",
        "4",
        "--per_device_train_batch_size",
        "8",
        "--disable_tqdm",
        "true",
        *extra,
    ]


def run_cli(*args) -> int:
    from dontstop.cli import main

    return main(["finetune", *args])


# --- masked LMs of every architecture with a masked-only head --------------------------------------------------

VOCAB = 97
COMMON = dict(
    vocab_size=VOCAB,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=64,
    max_position_embeddings=64,
    pad_token_id=0,
)

TINY_CONFIGS = {
    "bert": lambda: BertConfig(**COMMON),
    "roberta": lambda: RobertaConfig(**{**COMMON, "max_position_embeddings": 70}, bos_token_id=1, eos_token_id=2),
    "xlm-roberta": lambda: XLMRobertaConfig(
        **{**COMMON, "max_position_embeddings": 70}, bos_token_id=1, eos_token_id=2
    ),
    "distilbert": lambda: DistilBertConfig(
        vocab_size=VOCAB, dim=32, n_layers=2, n_heads=2, hidden_dim=64, max_position_embeddings=64, pad_token_id=0
    ),
    "deberta-v2": lambda: DebertaV2Config(
        **COMMON, relative_attention=True, position_buckets=8, pos_att_type=["p2c", "c2p"]
    ),
    "modernbert": lambda: ModernBertConfig(**COMMON, global_attn_every_n_layers=1, local_attention=16),
    "albert": lambda: AlbertConfig(**COMMON, embedding_size=16),
}


# --- pretraining ------------------------------------------------------------------------------------------------


def parse(argv):
    """`dontstop pretrain` arguments as its dataclasses."""
    from dontstop.config import make_parser, parse_with_config

    return parse_with_config(make_parser("pretrain"), argv)


def pretrain(*argv, callbacks=None):
    """`dontstop pretrain` in-process through its Python function (callbacks can be passed in)."""
    from dontstop.pretrain import run_pretrain

    return run_pretrain(*parse(list(argv)), callbacks=callbacks)


def pretrain_cli(*args) -> dict:
    """`dontstop pretrain` through the command line; its metrics.json."""
    from dontstop.cli import main

    assert main(["pretrain", *args]) == 0
    with open(os.path.join(args[args.index("--output_dir") + 1], "metrics.json")) as f:
        return json.load(f)


def weights(directory) -> dict[str, torch.Tensor]:
    return load_file(os.path.join(directory, "model.safetensors"))


class StopAt(TrainerCallback):
    """Interrupt training after the given step (after its checkpoint is written)."""

    def __init__(self, step):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            control.should_training_stop = True


# --- vocabulary extension ---------------------------------------------------------------------------------------

HEADER = "word\tfreq\tcohesion\tleft_entropy\tright_entropy\tscore\tdomain_ratio\tin_base_dict"


# As `dontstop mine` writes them, best first: new words, a word the tiny tokenizers already hold as one token, a
# duplicate (for lower-casing tokenizers), a phrase, a Chinese word and a single Han character (one token in BERT).
ROWS = [
    "foobar\t40\t3.1\t2.0\t2.2\t9.5\t12.0\t0",
    "kernel\t90\t\t\t\t9.0\t\t1",
    "kernelspace\t30\t2.5\t1.9\t1.7\t8.0\t9.5\t0",
    "Foobar\t12\t3.0\t1.0\t1.0\t7.0\t4.0\t0",
    "machine learning\t9\t2.0\t1.5\t1.5\t6.0\t3.0\t0",
    "北京大学\t8\t4.0\t1.2\t1.3\t5.0\t8.0\t0",
    "北\t8\t\t\t\t4.0\t\t1",
]


def write_words(path, rows=ROWS, header=HEADER) -> str:
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join([header, *rows]) + "\n")
    return str(path)


def extend(model: str, out, *extra: str, words=None) -> dict:
    from dontstop.cli import main
    from dontstop.models import VOCAB_FILE

    words = words or write_words(os.path.join(os.path.dirname(str(out)), f"{os.path.basename(str(out))}.tsv"))
    argv = ["vocab", "extend", "--model_name_or_path", model, "--words", words, "--output_dir", str(out), *extra]
    assert main(argv) == 0
    with open(os.path.join(out, VOCAB_FILE), encoding="utf-8") as f:
        return json.load(f)


def with_random_head(source: str, target, untie: bool = False) -> str:
    """A copy of `source` whose output bias (and, untied, output embeddings) are random, not the zeros and tied
    rows of a fresh model: a mean over them then shows which rows it was taken from."""
    model = AutoModelForMaskedLM.from_pretrained(source, tie_word_embeddings=not untie)
    head = model.get_output_embeddings()
    torch.manual_seed(1)
    with torch.no_grad():
        if untie:
            head.weight.normal_()
            head.bias = model.cls.predictions.bias  # the bias stays one tensor, as in a tied BERT
        head.bias.normal_()
    model.save_pretrained(str(target))
    AutoTokenizer.from_pretrained(source).save_pretrained(str(target))
    return str(target)


def domain_corpus(path) -> str:
    """Documents in which the new words occur, so their input rows receive gradients."""
    docs = [f"{doc} the foobar reads kernelspace." for doc in synthetic_documents(120, seed=3)]
    return write_jsonl(path, docs)
