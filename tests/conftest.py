"""Tiny models and corpora built inside the tests: no network, no shared data, seconds per test."""

from __future__ import annotations

import json
import os
import random

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

WORDS = (
    "the kernel module loads a driver for the device and the daemon reads its config file from etc "
    "package manager installs library headers python script prints output to stdout network socket "
    "binds port server client request response cache memory disk process thread signal"
).split()


HAN = "".join(dict.fromkeys("我们在北京大学学习自然语言处理深度框架的很好这家酒店服务态度也不错中国人民日报新闻"))


def synthetic_documents(n: int, seed: int = 0) -> list[str]:
    """Documents with structure a tiny model can learn: fixed phrases with occasional substitutions."""
    rng = random.Random(seed)
    phrases = [" ".join(WORDS[i : i + 6]) for i in range(0, len(WORDS) - 6, 3)]
    docs = []
    for _ in range(n):
        sentences = []
        for _ in range(rng.randint(1, 4)):
            words = rng.choice(phrases).split()
            if rng.random() < 0.2:
                words[rng.randrange(len(words))] = rng.choice(WORDS)
            sentences.append(" ".join(words) + ".")
        docs.append(" ".join(sentences))
    return docs


def write_jsonl(path, texts, column="text"):
    with open(path, "w", encoding="utf-8") as f:
        for t in texts:
            f.write(json.dumps({column: t, "id": len(t)}) + "\n")
    return str(path)


@pytest.fixture
def corpus(tmp_path):
    return write_jsonl(tmp_path / "corpus.jsonl", synthetic_documents(300))


def _bert_tokenizer(directory):
    from transformers import BertTokenizer

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", ",", "，", "。"] + sorted(set(WORDS)) + list(HAN)
    vocab += [f"##{c}" for c in "abcdefghijklmnopqrstuvwxyz"] + list("abcdefghijklmnopqrstuvwxyz0123456789")
    return BertTokenizer(vocab={token: i for i, token in enumerate(vocab)}, model_max_length=128)


def _bpe_tokenizer(kind: str, directory):
    from tokenizers import ByteLevelBPETokenizer
    from transformers import GPT2Tokenizer, RobertaTokenizer

    bpe = ByteLevelBPETokenizer()
    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"] if kind == "roberta" else ["<|endoftext|>"]
    bpe.train_from_iterator(synthetic_documents(200), vocab_size=400, min_frequency=1, special_tokens=specials)
    files = dict(vocab=os.path.join(directory, "vocab.json"), merges=os.path.join(directory, "merges.txt"))
    bpe.save_model(directory)
    if kind == "roberta":
        return RobertaTokenizer(**files, model_max_length=128)
    return GPT2Tokenizer(**files, model_max_length=128)


def build_tiny_model(kind: str, directory, with_head: bool = True, dropout: bool = True):
    """Save a tiny randomly initialised model + tokenizer to `directory` and return the path."""
    import torch
    from transformers import (
        AutoModel,
        AutoModelForCausalLM,
        AutoModelForMaskedLM,
        BertConfig,
        DistilBertConfig,
        GPT2Config,
        RobertaConfig,
    )

    directory = str(directory)
    os.makedirs(directory, exist_ok=True)
    torch.manual_seed(0)
    tokenizer = _bert_tokenizer(directory) if kind in ("bert", "distilbert") else _bpe_tokenizer(kind, directory)
    small = dict(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=130,
    )
    if kind == "bert":
        config = BertConfig(**small, pad_token_id=tokenizer.pad_token_id)
        if not dropout:
            config.hidden_dropout_prob = config.attention_probs_dropout_prob = 0.0
    elif kind == "roberta":
        config = RobertaConfig(
            **{**small, "max_position_embeddings": 132},
            pad_token_id=tokenizer.pad_token_id,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
    elif kind == "distilbert":
        config = DistilBertConfig(
            vocab_size=len(tokenizer),
            dim=32,
            n_layers=2,
            n_heads=2,
            hidden_dim=64,
            max_position_embeddings=130,
            pad_token_id=tokenizer.pad_token_id,
        )
    else:
        config = GPT2Config(
            vocab_size=len(tokenizer),
            n_embd=32,
            n_layer=2,
            n_head=2,
            n_positions=128,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
    if kind == "gpt2":
        model = AutoModelForCausalLM.from_config(config)
    elif with_head:
        model = AutoModelForMaskedLM.from_config(config)
    else:
        model = AutoModel.from_config(config)  # an encoder checkpoint without MLM-head weights
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return str(directory)


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory):
    return build_tiny_model("bert", tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="session")
def tiny_bert_headless(tmp_path_factory):
    return build_tiny_model("bert", tmp_path_factory.mktemp("tiny-bert-headless"), with_head=False)


@pytest.fixture(scope="session")
def tiny_bert_no_dropout(tmp_path_factory):
    return build_tiny_model("bert", tmp_path_factory.mktemp("tiny-bert-no-dropout"), dropout=False)


@pytest.fixture(scope="session")
def tiny_roberta(tmp_path_factory):
    return build_tiny_model("roberta", tmp_path_factory.mktemp("tiny-roberta"))


@pytest.fixture(scope="session")
def tiny_distilbert(tmp_path_factory):
    return build_tiny_model("distilbert", tmp_path_factory.mktemp("tiny-distilbert"))


@pytest.fixture(scope="session")
def tiny_gpt2(tmp_path_factory):
    return build_tiny_model("gpt2", tmp_path_factory.mktemp("tiny-gpt2"))


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    """Each test gets its own tokenization cache, so cache hits are never an accident of test order."""
    monkeypatch.setenv("DONTSTOP_CACHE", str(tmp_path / "cache"))


def pretrain_args(model: str, train_file: str, output_dir: str, *extra: str) -> list[str]:
    return [
        "--model_name_or_path",
        model,
        "--train_file",
        train_file,
        "--output_dir",
        output_dir,
        "--max_seq_length",
        "32",
        "--per_device_train_batch_size",
        "8",
        "--learning_rate",
        "1e-3",
        "--logging_steps",
        "5",
        "--save_strategy",
        "no",
        "--disable_tqdm",
        "true",
        "--seed",
        "7",
        *extra,
    ]


def pretrain_cli(model: str, train_file: str, output_dir: str, *extra: str) -> int:
    """`dontstop pretrain` in-process with the tests' small defaults; returns the exit status."""
    from dontstop.cli import main

    return main(["pretrain", *pretrain_args(model, train_file, output_dir, *extra)])
