"""Prompt-based continued pretraining (`dontstop pretrain --prompt`): the task text wrapped in the template, the
template's words never masked unless told, and the model it gives fine-tunes with the same prompt."""

from __future__ import annotations

import json
import os
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import pretrain_cli
from helpers import finetune_args, run_cli, separable_task, write_rows
from transformers import AutoTokenizer

from dontstop.masking import MaskedLMCollator
from dontstop.pretrain.prompted import protected_sequences, templated_corpus

TEMPLATE = "{text} the package manager installs {mask} ."
WORDS = '{"system": "driver", "network": "socket"}'


def data_args(tmp_path, **changes):
    settings = dict(prompt=TEMPLATE, text_column="text", prompt_label_column=None, verbalizer=None,
                    mask_template=False, data_cache_dir=str(tmp_path / "cache"))  # fmt: skip
    return SimpleNamespace(**{**settings, **changes})


def test_the_corpus_is_the_template_around_each_text_with_the_mask_or_the_label_word(tiny_bert, tmp_path):
    tokenizer = AutoTokenizer.from_pretrained(tiny_bert)
    train = write_rows(tmp_path / "train.jsonl", separable_task(6, 0))
    rows = [json.loads(line) for line in open(train)]
    unlabeled = [json.loads(line)["text"] for line in open(templated_corpus(train, data_args(tmp_path), tokenizer))]
    assert unlabeled[0] == f"{rows[0]['text']} the package manager installs [MASK] ."
    labelled = data_args(tmp_path, prompt_label_column="label", verbalizer=WORDS)
    texts = [json.loads(line)["text"] for line in open(templated_corpus(train, labelled, tokenizer))]
    words = {"system": "driver", "network": "socket"}
    assert texts == [f"{r['text']} the package manager installs {words[r['label']]} ." for r in rows]


def test_masking_never_chooses_the_template_unless_told(tiny_bert, tmp_path):
    tokenizer = AutoTokenizer.from_pretrained(tiny_bert)
    protected = protected_sequences(data_args(tmp_path), tokenizer)
    template = tokenizer(" the package manager installs", add_special_tokens=False)["input_ids"]
    assert protected == (tuple(template),)
    texts = [f"{r['text']} the package manager installs driver ." for r in separable_task(64, 1)]
    features = [{"input_ids": tokenizer(t)["input_ids"], "idx": i} for i, t in enumerate(texts)]

    def labelled_template_tokens(sequences) -> tuple[int, int]:
        collator = MaskedLMCollator.from_tokenizer(tokenizer, len(tokenizer), mlm_probability=0.3,
                                                   protected=sequences)  # fmt: skip
        labels = collator(features)["labels"].numpy()
        at_template, elsewhere = 0, 0
        for row, f in enumerate(features):
            ids = np.asarray(f["input_ids"])
            start = len(ids) - 3 - len(template)  # ... template, driver, ".", [SEP]
            assert ids[start : start + len(template)].tolist() == template
            chosen = labels[row, : len(ids)] != -100
            at_template += int(chosen[start : start + len(template)].sum())
            elsewhere += int(chosen.sum()) - int(chosen[start : start + len(template)].sum())
        return at_template, elsewhere

    at_template, elsewhere = labelled_template_tokens(protected)
    assert at_template == 0 and elsewhere > 50  # the text and the label word are masked as usual
    told = protected_sequences(data_args(tmp_path, mask_template=True), tokenizer)
    assert told == () and labelled_template_tokens(told)[0] > 10


def test_pcp_pretrains_on_the_templated_text_and_prompt_fine_tuning_takes_its_model(tiny_bert, tmp_path):
    files = {name: write_rows(tmp_path / f"{name}.jsonl", separable_task(n, i))
             for i, (name, n) in enumerate((("train", 40), ("dev", 16)))}  # fmt: skip
    pcp = str(tmp_path / "pcp")
    cache = str(tmp_path / "cache")
    extra = ("--prompt", TEMPLATE, "--prompt_label_column", "label", "--verbalizer", WORDS, "--max_steps", "4",
             "--line_by_line", "--data_cache_dir", cache)  # fmt: skip
    assert pretrain_cli(tiny_bert, files["train"], pcp, *extra) == 0
    assert len(os.listdir(os.path.join(cache, "prompted"))) == 1
    with open(os.path.join(pcp, "README.md"), encoding="utf-8") as f:
        assert f"every text in the template `{TEMPLATE}`, its slot holding the word of its `label` label" in f.read()
    out = tmp_path / "ft"
    assert run_cli(*finetune_args(pcp, files, out, "--seeds", "1", "--prompt", TEMPLATE, "--verbalizer", WORDS)) == 0
    with open(out / "results.json") as f:
        assert json.load(f)["model"] == pcp


@pytest.mark.parametrize(
    "extra, message",
    [
        (("--prompt", "{text} no slot here ."), "exactly one mask slot"),
        (("--prompt", "{body} is {mask} ."), "{body} names no column"),
        (("--prompt", TEMPLATE, "--prompt_label_column", "label"), "go together"),
        (("--prompt", TEMPLATE, "--prompt_label_column", "label", "--verbalizer", '{"system": "driver"}'),
         "no word for label 'network'"),
    ],
)  # fmt: skip
def test_bad_pcp_options_are_one_line_errors_and_write_nothing(extra, message, tiny_bert, tmp_path, capsys):
    train = write_rows(tmp_path / "train.jsonl", separable_task(20, 0))
    out = tmp_path / "out"
    cache = ("--data_cache_dir", str(tmp_path / "cache"))
    assert pretrain_cli(tiny_bert, train, str(out), "--max_steps", "2", *cache, *extra) == 2
    assert message in capsys.readouterr().err.strip().splitlines()[-1]
    assert not os.path.exists(out)
