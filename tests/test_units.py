"""Masking units: whole words (English, Chinese), lexicon entities, spans, n-grams; budget, loud failures, preview."""

from __future__ import annotations

import itertools
import json
import os

import numpy as np
import pytest
from conftest import HAN, WORDS, pretrain_cli, write_jsonl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from transformers import AutoTokenizer, DataCollatorForLanguageModeling

from dontstop.cli import main
from dontstop.errors import UsageError
from dontstop.masking import MaskedLMCollator, parse_masking
from dontstop.masking.base import UNITS, Example
from dontstop.segment import Boundaries, Lexicon, make_segmenter, unit_ids
from dontstop.tokenization import check_offsets, encode_with_offsets


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    from conftest import _bert_tokenizer

    return _bert_tokenizer(str(tmp_path_factory.mktemp("zh-tok")))


def encode(tokenizer, text, boundaries):
    """(input ids with [CLS]/[SEP], word ids, entity ids) as the tokenization cache would give them."""
    all_ids, offsets = encode_with_offsets(tokenizer, [text])
    notes = boundaries.annotate([text], offsets)
    pad = np.array([-1])
    ids = np.concatenate([[tokenizer.cls_token_id], all_ids[0], [tokenizer.sep_token_id]]).astype(np.int64)
    words = np.concatenate([pad, notes["word_ids"][0], pad])
    entities = np.concatenate([pad, notes["entity_ids"][0], pad]) if "entity_ids" in notes else None
    return ids, words, entities


def collator(tokenizer, masking="word", seed=0, **kwargs):
    return MaskedLMCollator.from_tokenizer(
        tokenizer, len(tokenizer), seed=seed, masking=parse_masking(masking), **kwargs
    )


def assert_units_whole(labels, unit_of_token):
    """Every unit is either entirely chosen or not at all."""
    for unit in set(unit_of_token[unit_of_token >= 0].tolist()):
        chosen = labels[unit_of_token == unit] != -100
        assert chosen.all() or not chosen.any(), f"unit {unit} split: {chosen}"


@pytest.mark.parametrize("fixture", ["tiny_bert", "tiny_roberta", "tiny_gpt2"])
def test_backend_offsets_equal_the_wrappers(request, fixture):
    tok = AutoTokenizer.from_pretrained(request.getfixturevalue(fixture))
    texts = ["The kernel module loads, a driver!", "  spaced   out  text ", "我们在北京 mixed 学习", ""]
    ids, offsets = encode_with_offsets(tok, texts)
    wrapped = tok(texts, add_special_tokens=False, return_offsets_mapping=True)
    assert ids == wrapped["input_ids"]
    assert [list(map(tuple, o)) for o in offsets] == [list(map(tuple, o)) for o in wrapped["offset_mapping"]]


def test_batch_annotation_equals_one_text_at_a_time(tokenizer, tmp_path):
    lexicon = tmp_path / "terms.txt"
    lexicon.write_text("network socket\n北京大学\n", encoding="utf-8")
    boundaries = Boundaries("auto", (), (str(lexicon),))
    texts = ["the network socket binds", "", "我们在北京大学学习", "a b", "network socket 北京大学"]
    _, offsets = encode_with_offsets(tokenizer, texts)
    batch = boundaries.annotate(texts, offsets)
    for i, text in enumerate(texts):
        single = boundaries.annotate([text], [offsets[i]])
        for key in ("word_ids", "entity_ids"):
            assert list(batch[key][i]) == list(single[key][0]), (key, text)
        assert batch["n_words"][i] == single["n_words"][0]


def test_unit_ids_follow_words_and_join_straddled_words():
    spans = [(0, 3), (4, 9), (9, 11)]  # "abc defgh ij": the last two words touch
    offsets = [(0, 0), (0, 2), (2, 3), (4, 6), (6, 10), (10, 11), (0, 0)]  # token 4 straddles words 1 and 2
    assert unit_ids(offsets, spans).tolist() == [-1, 0, 0, 1, 1, 1, -1]
    assert unit_ids([(0, 1), (1, 2), (3, 4)], [(0, 1), (3, 4)]).tolist() == [0, 1, 2]  # (1,2) is in no word


TEXTS = st.lists(
    st.one_of(st.sampled_from(WORDS), st.text(alphabet=HAN, min_size=1, max_size=8), st.sampled_from(list(",.，。"))),
    min_size=1,
    max_size=40,
).map(lambda parts: " ".join(parts))


EXAMPLES = int(os.environ.get("HYPOTHESIS_EXAMPLES", "60"))  # raise it for a deeper search


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=TEXTS, seed=st.integers(0, 10_000), masking=st.sampled_from(["word", "span", "ngram", "word:1,span:1"]))
def test_masked_positions_are_unions_of_whole_units(tokenizer, text, seed, masking):
    ids, words, _ = encode(tokenizer, text, Boundaries("auto"))
    result = collator(tokenizer, masking, seed=seed, mlm_probability=0.3).mask(ids, 0, seed, words)
    assert_units_whole(result.labels, words)
    assert (result.labels[[0, -1]] == -100).all(), "special tokens are never masked"
    for positions in result.units:  # replacement is per unit: all mask, or none of them
        is_mask = result.input_ids[positions] == tokenizer.mask_token_id
        assert is_mask.all() or not is_mask.any()


def test_hugging_face_takes_a_han_run_as_one_word_and_we_do_not(tokenizer):
    text = "我们在北京大学学习自然语言处理"
    enc = tokenizer([text], add_special_tokens=False, return_offsets_mapping=True)
    offsets = np.array(enc["offset_mapping"])
    hf_words, _ = DataCollatorForLanguageModeling._calc_word_ids_and_prob_mask(offsets, np.zeros(offsets.shape[:2]))
    assert len(set(hf_words[0].tolist())) == 1, "HF: the whole sentence is one 'word'"

    ours = unit_ids(enc["offset_mapping"][0], make_segmenter("jieba")(text))
    assert len(set(ours.tolist())) >= 5
    chars = list(text)
    beijing = chars.index("北")
    assert ours[beijing] == ours[beijing + 1]  # 北京 is one word
    assert ours[0] == ours[1] != ours[2]  # 我们 | 在


def test_user_dictionary_word_is_masked_all_or_nothing(tokenizer, tmp_path):
    text = "我们学习深度学习框架很好"
    without = Boundaries("jieba")
    _, words, _ = encode(tokenizer, text, without)
    start = text.index("深")
    assert len(set(words[1 + start : 1 + start + 6].tolist())) > 1, "jieba alone splits the planted word"

    user_dict = tmp_path / "mined.txt"
    user_dict.write_text("深度学习框架 100\n", encoding="utf-8")
    ids, words, _ = encode(tokenizer, text, Boundaries("jieba", (str(user_dict),)))
    planted = words[1 + start : 1 + start + 6]
    assert len(set(planted.tolist())) == 1
    c = collator(tokenizer, "word", mlm_probability=0.5)
    masked_whole = 0
    for index in range(300):
        chosen = c.mask(ids, 0, index, words).labels[1 + start : 1 + start + 6] != -100
        assert chosen.all() or not chosen.any()
        masked_whole += chosen.all()
    assert masked_whole > 10


def test_lexicon_entities_are_masked_whole_and_respect_word_boundaries(tokenizer, tmp_path):
    lexicon = tmp_path / "terms.txt"
    lexicon.write_text("network socket\npackage manager\nsock\n北京大学\n", encoding="utf-8")
    sample = "a network socket and a socket; 在北京大学"
    found = Lexicon([str(lexicon)]).spans(sample)
    beijing = sample.index("北")
    assert found == [(2, 16), (beijing, beijing + 4)]  # longest match first; "sock" is not found inside "socket"
    text = "the package manager installs library headers and the network socket binds port"
    boundaries = Boundaries("auto", (), (str(lexicon),))
    ids, words, entities = encode(tokenizer, text, boundaries)
    assert len(set(entities[entities >= 0].tolist())) == 2
    c = collator(tokenizer, "entity", mlm_probability=0.3)
    entity_hits = 0
    for index in range(200):
        result = c.mask(ids, 0, index, words, entities)
        assert_units_whole(result.labels, entities)
        assert_units_whole(result.labels, words)
        entity_hits += int((result.labels[entities >= 0] != -100).any())
    assert entity_hits > 150, "entities are proposed before other words"


def test_span_lengths_follow_the_clipped_geometric_law():
    example = Example(np.ones(2000, dtype=bool), np.arange(2000))
    spec = parse_masking("span")
    rng = np.random.default_rng(0)
    lengths = []
    for _ in range(200):
        _, candidates = UNITS["span"].propose(rng, example, spec)
        lengths += [last - first for first, last in itertools.islice(candidates, 100)]  # one-token words
    lengths = np.array(lengths)
    p, top = 0.2, 10
    expected = np.array([p * (1 - p) ** (k - 1) for k in range(1, top)] + [(1 - p) ** (top - 1)]) * len(lengths)
    observed = np.array([(lengths == k).sum() for k in range(1, top + 1)])
    chi2 = ((observed - expected) ** 2 / expected).sum()
    assert chi2 < 27.88, f"chi-square {chi2:.1f} with 9 degrees of freedom (p < 0.001)"
    assert lengths.max() == top


@pytest.mark.parametrize("masking", ["token", "word", "span", "ngram", "entity", "word:0.6,entity:0.3,span:0.1"])
def test_masking_rate_stays_within_tolerance(tokenizer, tmp_path, masking):
    lexicon = tmp_path / "terms.txt"
    lexicon.write_text("network socket\npackage manager\n", encoding="utf-8")
    text = " ".join(WORDS * 3) + " " + HAN * 3
    ids, words, entities = encode(tokenizer, text, Boundaries("auto", (), (str(lexicon),)))
    c = collator(tokenizer, masking, mlm_probability=0.15)
    chosen = maskable = 0
    for index in range(400):
        result = c.mask(ids, 1, index, words, entities)
        chosen += int((result.labels != -100).sum())
        maskable += len(ids) - 2
    assert abs(chosen / maskable - 0.15) < 0.01, chosen / maskable


def test_missing_boundaries_are_an_error_not_a_fallback(tokenizer):
    ids = np.array([2, 20, 21, 3])
    with pytest.raises(ValueError, match="needs word_ids"):
        collator(tokenizer, "word").mask(ids, 0, 0)

    class NoOffsets:
        name_or_path = "slow-tokenizer"

        def __call__(self, *args, return_offsets_mapping=False, **kwargs):
            if return_offsets_mapping:
                raise NotImplementedError("return_offset_mapping is not available when using Python tokenizers")
            return {"input_ids": [1]}

    with pytest.raises(UsageError, match="no character offsets"):
        check_offsets(NoOffsets())


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--masking", "entity"], "needs --lexicon"),
        (["--masking", "wrod"], "unknown unit 'wrod'"),
        (["--masking", "word:x"], "not a number"),
        (["--masking", "word", "--user_dict", "missing.txt"], "missing.txt: no such file"),
        (["--masking", "entity", "--lexicon", "missing.txt"], "missing.txt: no such file"),
        (["--masking", "ngram", "--ngram_probs", "0.5,0.6"], "--ngram_probs"),
    ],
)
def test_bad_masking_options_are_one_line_exit_2(tiny_bert, corpus, tmp_path, capsys, extra, message):
    out = tmp_path / "out"
    assert pretrain_cli(tiny_bert, corpus, str(out), *extra) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_invalid_utf8_user_dict_names_file_and_line(tiny_bert, corpus, tmp_path, capsys):
    bad = tmp_path / "bad.txt"
    bad.write_bytes("好的 3\n".encode() + b"\xff\xfe 3\n")
    assert pretrain_cli(tiny_bert, corpus, str(tmp_path / "o"), "--masking", "word", "--user_dict", str(bad)) == 2
    assert "bad.txt:2: invalid UTF-8" in capsys.readouterr().err


def test_unknown_segmenter_is_rejected(tiny_bert, corpus, tmp_path, capsys):
    assert pretrain_cli(tiny_bert, corpus, str(tmp_path / "o"), "--segmenter", "icu") == 2
    assert "invalid choice: 'icu'" in capsys.readouterr().err


def test_pretrain_with_chinese_whole_word_masking_and_cached_boundaries(tiny_bert, tmp_path):
    import os

    texts = [
        "我们在北京大学学习自然语言处理",
        "这家酒店的服务态度很好",
        "中国人民日报新闻 the kernel module loads",
    ] * 40
    corpus = write_jsonl(tmp_path / "zh.jsonl", texts)
    user_dict = tmp_path / "mined.txt"
    user_dict.write_text("自然语言处理 50\n", encoding="utf-8")
    out = str(tmp_path / "out")
    assert (
        pretrain_cli(
            tiny_bert, corpus, out, "--max_steps", "6", "--masking", "word:0.7,span:0.3", "--user_dict", str(user_dict)
        )
        == 0
    )
    with open(os.path.join(out, "metrics.json")) as f:
        metrics = json.load(f)
    assert metrics["after"]["eval_validation_loss"] < metrics["before"]["eval_validation_loss"]
    entries = os.listdir(os.path.join(os.environ["DONTSTOP_CACHE"], "tokenized"))
    assert len(entries) == 1 and os.path.exists(
        os.path.join(os.environ["DONTSTOP_CACHE"], "tokenized", entries[0], "word_ids.npy")
    )
    user_dict.write_text("自然语言处理 50\n北京大学 50\n", encoding="utf-8")  # a changed dictionary re-tokenizes
    assert (
        pretrain_cli(
            tiny_bert,
            corpus,
            out,
            "--max_steps",
            "2",
            "--masking",
            "word",
            "--user_dict",
            str(user_dict),
            "--overwrite_output_dir",
        )
        == 0
    )
    assert len(os.listdir(os.path.join(os.environ["DONTSTOP_CACHE"], "tokenized"))) == 2


def test_streaming_with_word_masking(tiny_bert, corpus, tmp_path):
    out = str(tmp_path / "out")
    assert (
        pretrain_cli(
            tiny_bert, corpus, out, "--streaming", "--max_steps", "4", "--masking", "word", "--validation_file", corpus
        )
        == 0
    )


def test_preview_text_and_json(tiny_bert, tmp_path, capsys):
    corpus = write_jsonl(tmp_path / "c.jsonl", ["the package manager installs library headers", "我们在北京大学学习"])
    lexicon = tmp_path / "terms.txt"
    lexicon.write_text("package manager\n", encoding="utf-8")
    args = [
        "preview",
        "--model_name_or_path",
        tiny_bert,
        "--train_file",
        corpus,
        "--masking",
        "entity",
        "--lexicon",
        str(lexicon),
        "--mlm_probability",
        "0.4",
        "--num_examples",
        "2",
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "#0 (entity masking" in out and "#1" in out and "masking rate:" in out and "unit length" in out
    assert main([*args, "--format", "json"]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(records) == 2
    first = records[0]
    assert len(first["tokens"]) == len(first["masked"]) == len(first["unit"]) == len(first["replacement"])
    manager = [i for i, t in enumerate(first["tokens"]) if t in ("package", "manager")]
    assert len({first["masked"][i] for i in manager}) == 1  # the entity is masked whole
    han = records[1]
    assert han["unit"][1] == han["unit"][2]  # 我们 is one unit
