"""Packing, line-by-line examples, framing per tokenizer family, the document split and the tokenization cache."""

from __future__ import annotations

import os

import numpy as np
import pytest
from transformers import AutoTokenizer

from dontstop import corpus as corpus_module
from dontstop.tokenization import (
    Framing,
    LineByLine,
    PackedBlocks,
    TokenizedCorpus,
    split_documents,
    tokenize_corpus,
)


def toy_corpus(lengths):
    """Documents whose tokens are 100, 101, ... so every token's origin is visible."""
    ids = np.arange(100, 100 + sum(lengths), dtype=np.int32)
    return TokenizedCorpus(ids, np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64))


BERT_FRAMING = Framing(prefix=(2,), suffix=(3,), separator=3)
GPT_FRAMING = Framing(prefix=(), suffix=(), separator=0)


def test_packed_blocks_are_full_and_keep_the_tail():
    corpus = toy_corpus([5, 7, 3, 11])
    blocks = PackedBlocks(corpus, BERT_FRAMING, max_seq_length=8)
    examples = [blocks[i]["input_ids"] for i in range(len(blocks))]
    assert all(len(e) == 8 for e in examples[:-1])
    assert 2 < len(examples[-1]) <= 8
    assert all(e[0] == 2 and e[-1] == 3 for e in examples)
    content = np.concatenate([e[1:-1] for e in examples])
    # every document's tokens, in order, separated by exactly one [SEP]; nothing dropped
    expected = np.concatenate([np.append(corpus.document(i), 3) for i in range(4)])[:-1]
    np.testing.assert_array_equal(content, expected)
    assert blocks.lengths().tolist() == [len(e) for e in examples]


def test_causal_packing_ends_every_document_with_eos():
    corpus = toy_corpus([4, 4])
    blocks = PackedBlocks(corpus, GPT_FRAMING, max_seq_length=5)
    stream = np.concatenate([blocks[i]["input_ids"] for i in range(len(blocks))])
    assert stream.tolist() == [100, 101, 102, 103, 0, 104, 105, 106, 107, 0]
    assert len(blocks) == 2


def test_line_by_line_splits_long_documents_instead_of_truncating():
    corpus = toy_corpus([3, 14, 6])
    examples = LineByLine(corpus, BERT_FRAMING, max_seq_length=8)
    contents = [examples[i]["input_ids"][1:-1] for i in range(len(examples))]
    assert [len(c) for c in contents] == [3, 6, 6, 2, 6]
    np.testing.assert_array_equal(np.concatenate(contents), corpus.ids)
    assert examples.lengths().tolist() == [len(c) + 2 for c in contents]


@pytest.mark.parametrize("fixture, prefix, suffix", [("tiny_bert", 1, 1), ("tiny_roberta", 1, 1), ("tiny_gpt2", 0, 0)])
def test_framing_follows_the_tokenizer(request, fixture, prefix, suffix):
    tokenizer = AutoTokenizer.from_pretrained(request.getfixturevalue(fixture))
    framing = Framing.from_tokenizer(tokenizer)
    assert (len(framing.prefix), len(framing.suffix)) == (prefix, suffix)
    assert framing.separator == (
        tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
    )


def test_split_is_by_document_seeded_and_disjoint():
    corpus = toy_corpus([3] * 40)
    train, held = split_documents(corpus, 10, seed=1)
    assert (train.num_documents, held.num_documents) == (36, 4)
    assert set(train.ids.tolist()).isdisjoint(held.ids.tolist())
    assert sorted(train.ids.tolist() + held.ids.tolist()) == corpus.ids.tolist()
    again, _ = split_documents(corpus, 10, seed=1)
    np.testing.assert_array_equal(train.ids, again.ids)


def test_tokenization_is_cached_and_reused(tiny_bert, corpus, monkeypatch):
    tokenizer = AutoTokenizer.from_pretrained(tiny_bert)
    first = tokenize_corpus(corpus, tokenizer)
    assert first.num_documents == 300
    assert (
        first.document(0).tolist()
        == tokenizer(corpus_module.load_corpus(corpus)[0]["text"], add_special_tokens=False)["input_ids"]
    )

    def no_reading(*args, **kwargs):
        raise AssertionError("the cached corpus was tokenized again")

    monkeypatch.setattr(corpus_module, "load_corpus", no_reading)
    second = tokenize_corpus(corpus, tokenizer)
    np.testing.assert_array_equal(first.ids, second.ids)
    np.testing.assert_array_equal(first.offsets, second.offsets)


def test_cache_misses_when_the_file_changes(tiny_bert, corpus):
    tokenizer = AutoTokenizer.from_pretrained(tiny_bert)
    before = tokenize_corpus(corpus, tokenizer)
    with open(corpus, "a") as f:
        f.write('{"text": "one more document"}\n')
    after = tokenize_corpus(corpus, tokenizer)
    assert after.num_documents == before.num_documents + 1


def test_cache_never_serves_a_file_rewritten_with_the_same_size_and_time(tiny_bert, tmp_path):
    """The cache keys on the file's content: the same size and modification time do not make it the same file."""
    tokenizer = AutoTokenizer.from_pretrained(tiny_bert)
    path = tmp_path / "corpus.txt"
    path.write_text("the kernel module loads\n")
    stat = os.stat(path)
    before = tokenize_corpus(str(path), tokenizer)
    path.write_text("the daemon reads config\n")  # as many bytes
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert os.stat(path).st_size == stat.st_size and os.stat(path).st_mtime_ns == stat.st_mtime_ns
    after = tokenize_corpus(str(path), tokenizer)
    assert after.ids.tolist() == tokenizer("the daemon reads config", add_special_tokens=False)["input_ids"]
    assert after.ids.tolist() != before.ids.tolist()
