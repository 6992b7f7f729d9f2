"""`--verbalizer auto` (LM-BFF's automatic label words): one distinct whole word per label, chosen the same way
twice, written where the user can reuse it; a label without a training example is a one-line error."""

from __future__ import annotations

import json
import os

import pytest
from helpers import finetune_args, run_cli, separable_task, write_rows
from transformers import AutoTokenizer

from dontstop.errors import UsageError
from dontstop.finetune.methods.auto_verbalizer import choose_verbalizer, whole_word
from dontstop.tasks import Task, TaskSplit

TEMPLATE = "{text} the package {mask} ."


def toy_task(labels=("network", "system"), n=24) -> Task:
    rows = separable_task(n, 0)
    split = TaskSplit("train.jsonl", [r["text"] for r in rows], [r["label"] for r in rows], list(range(1, n + 1)))
    return Task("single_label", list(labels), split, split)


@pytest.mark.parametrize("kind", ["bert", "roberta"])
def test_the_chosen_words_are_whole_distinct_one_per_label_and_the_same_twice(kind, tiny_bert, tiny_roberta):
    model_dir = {"bert": tiny_bert, "roberta": tiny_roberta}[kind]
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    task = toy_task()
    runs = [choose_verbalizer(model_dir, task, tokenizer, TEMPLATE, {"text": "text"}, list(range(24)), 5, 32, 8)
            for _ in range(2)]  # fmt: skip
    (words, record), (again, _) = runs
    assert words == again
    assert sorted(words) == ["network", "system"] and all(len(w) == 1 for w in words.values())
    chosen = [w[0] for w in words.values()]
    assert len(set(chosen)) == 2
    special = set(tokenizer.all_special_ids)
    for word in chosen:  # one token as the slot spells it (after a space), and no special token or punctuation
        ids = tokenizer(" " + word, add_special_tokens=False)["input_ids"]
        assert len(ids) == 1 and word.isalpha() and whole_word(ids[0], tokenizer, True, special) == word
        assert word in record["candidates"][next(k for k, v in words.items() if v == [word])]
    assert record["examples"] == 24 and record["candidates_per_label"] == 5


def test_subword_pieces_and_specials_are_never_candidates(tiny_bert, tiny_roberta):
    bert = AutoTokenizer.from_pretrained(tiny_bert)
    special = set(bert.all_special_ids)
    assert whole_word(bert.convert_tokens_to_ids("##a"), bert, True, special) is None
    assert whole_word(bert.mask_token_id, bert, True, special) is None
    assert whole_word(bert.convert_tokens_to_ids("."), bert, True, special) is None
    assert whole_word(bert.convert_tokens_to_ids("kernel"), bert, True, special) == "kernel"
    roberta = AutoTokenizer.from_pretrained(tiny_roberta)
    special = set(roberta.all_special_ids)
    whole = [w for w in ("the", "and", "a", "to") if len(roberta(" " + w, add_special_tokens=False)["input_ids"]) == 1]
    assert whole, "the tiny BPE vocabulary holds some common word whole"
    spaced = roberta(" " + whole[0], add_special_tokens=False)["input_ids"][0]
    assert roberta.convert_ids_to_tokens(spaced).startswith("Ġ") and whole_word(spaced, roberta, True, special)
    bare = roberta(whole[0], add_special_tokens=False)["input_ids"]  # the same letters without their space
    assert len(bare) != 1 or whole_word(bare[0], roberta, True, special) is None


def test_a_label_without_training_examples_is_a_one_line_error(tiny_bert):
    tokenizer = AutoTokenizer.from_pretrained(tiny_bert)
    task = toy_task(labels=("network", "storage", "system"))
    with pytest.raises(UsageError, match="label 'storage' has no training example"):
        choose_verbalizer(tiny_bert, task, tokenizer, TEMPLATE, {"text": "text"}, list(range(24)), 5, 32, 8)


def test_finetune_with_an_auto_verbalizer_writes_and_reuses_it(tiny_bert, tmp_path):
    files = {name: write_rows(tmp_path / f"{name}.jsonl", separable_task(n, i))
             for i, (name, n) in enumerate((("train", 32), ("dev", 12)))}  # fmt: skip
    out = tmp_path / "auto"
    extra = ("--seeds", "1", "--num_train_epochs", "1", "--prompt", TEMPLATE, "--keep_models", "none")
    assert run_cli(*finetune_args(tiny_bert, files, out, *extra, "--verbalizer", "auto")) == 0
    with open(out / "verbalizer.json") as f:
        written = json.load(f)
    with open(out / "results.json") as f:
        results = json.load(f)
    assert results["prompt"]["verbalizer"] == written and results["prompt"]["chosen_by"]["examples"] == 32
    reused = tmp_path / "reused"
    assert run_cli(*finetune_args(tiny_bert, files, reused, *extra, "--verbalizer", str(out / "verbalizer.json"))) == 0
    with open(reused / "results.json") as f:
        again = json.load(f)
    assert again["seeds"][0]["dev"] == results["seeds"][0]["dev"]  # the same words: the same run


def test_auto_verbalizer_on_a_checkpoint_without_an_mlm_head_is_refused(tiny_bert_headless, tmp_path, capsys):
    files = {name: write_rows(tmp_path / f"{name}.jsonl", separable_task(12, i)) for i, name in enumerate(("train",
             "dev"))}  # fmt: skip
    out = tmp_path / "out"
    argv = finetune_args(tiny_bert_headless, files, out, "--prompt", TEMPLATE, "--verbalizer", "auto")
    assert run_cli(*argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "dontstop pretrain" in err[-1] and "--verbalizer auto" in err[-1]
    assert not os.path.exists(out)
