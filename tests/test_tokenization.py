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


def spread_stream(corpus: TokenizedCorpus, framing: Framing, column: str = "input_ids") -> np.ndarray:
    """The packed stream as it used to be built: every document, then the separator (-1 in boundary columns); with a
    suffix the last separator dropped."""
    values = corpus.ids if column == "input_ids" else corpus.columns[column]
    filler = framing.separator if column == "input_ids" else -1
    parts = [np.append(values[corpus.offsets[d] : corpus.offsets[d + 1]], filler) for d in range(corpus.num_documents)]
    stream = np.concatenate(parts).astype(np.int32)
    return stream[:-1] if framing.suffix else stream


@pytest.mark.parametrize("framing", [BERT_FRAMING, GPT_FRAMING])
@pytest.mark.parametrize("max_seq_length", [5, 8, 13])
def test_blocks_read_on_demand_are_the_stream_cut_into_blocks(framing, max_seq_length):
    """Blocks read from the (memory-mapped) arrays are exactly the slices of the stream they replace."""
    corpus = toy_corpus([5, 7, 1, 3, 11, 2])
    corpus.columns["word_ids"] = np.arange(corpus.num_tokens, dtype=np.int32) // 2
    blocks = PackedBlocks(corpus, framing, max_seq_length)
    content = max_seq_length - framing.overhead
    for column in ("input_ids", "word_ids"):
        stream = spread_stream(corpus, framing, column)
        assert len(blocks) == -(-len(stream) // content)
        for i in range(len(blocks)):
            inner = blocks[i][column][len(framing.prefix) : len(blocks[i][column]) - len(framing.suffix)]
            assert inner.dtype == np.int32
            np.testing.assert_array_equal(inner, stream[i * content : (i + 1) * content])


def test_blocks_with_documents_say_where_each_document_starts():
    corpus = toy_corpus([5, 7, 3, 11])
    blocks = PackedBlocks(corpus, BERT_FRAMING, max_seq_length=12, documents=True)
    assert "segments" not in PackedBlocks(corpus, BERT_FRAMING, max_seq_length=12)[0]
    # the stream: 100..104 [SEP] 105..111 [SEP] 112..114 [SEP] 115..125, ten tokens a block
    assert blocks[0]["input_ids"].tolist() == [2, 100, 101, 102, 103, 104, 3, 105, 106, 107, 108, 3]
    assert blocks[0]["segments"].tolist() == [0, 7]  # [CLS] + the first document + its [SEP] | the second
    assert blocks[1]["input_ids"].tolist() == [2, 109, 110, 111, 3, 112, 113, 114, 3, 115, 116, 3]
    assert blocks[1]["segments"].tolist() == [0, 5, 9]
    assert blocks[3]["segments"].tolist() == [0]  # the tail of the last document, alone


def test_streamed_and_packed_blocks_start_a_document_after_every_separator(tiny_bert, corpus):
    from dontstop.tokenization import StreamingBlocks

    tokenizer = AutoTokenizer.from_pretrained(tiny_bert)
    framing = Framing.from_tokenizer(tokenizer)
    packed = PackedBlocks(tokenize_corpus(corpus, tokenizer), framing, 32, documents=True)
    streamed = list(StreamingBlocks([corpus], tokenizer, framing, 32, batch_size=4, documents=True))
    for item in [packed[i] for i in range(len(packed))] + streamed:
        ids = item["input_ids"]
        after_separators = np.flatnonzero(ids[:-2] == framing.separator) + 1  # the suffix starts no document
        assert item["segments"].tolist() == [0, *after_separators.tolist()]
    assert max(len(item["segments"]) for item in streamed) > 1
