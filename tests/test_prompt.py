"""Prompt-based fine-tuning (`dontstop finetune --prompt`): the class scores are the MLM head's own, the template
survives truncation, multi-token words score by the documented rule, and bad templates or verbalizers are refused."""

from __future__ import annotations

import json
import os

import pytest
import torch
from helpers import finetune_args, run_cli, separable_task, write_rows
from transformers import AutoModelForMaskedLM, AutoTokenizer

from dontstop.errors import UsageError
from dontstop.finetune.methods.prompt import build_prompt, encode_prompt
from dontstop.finetune.methods.prompt_model import load_prompt_model

TEMPLATE = "{text} the package {mask} ."
WORDS = '{"system": "driver", "network": ["socket", "port"]}'
LABELS = ["network", "system"]


@pytest.fixture
def task_files(tmp_path):
    splits = (("train", 48), ("dev", 24), ("test", 24))
    return {name: write_rows(tmp_path / f"{name}.jsonl", separable_task(n, i)) for i, (name, n) in enumerate(splits)}


def prompt_model(model_dir, verbalizer=WORDS, template=TEMPLATE, allow_multi_token=False, multi_label=False):
    """(tokenizer, the prompt classifier, the prompt as kept in its config)."""
    from transformers import AutoConfig

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    prompt = build_prompt(template, verbalizer, LABELS, {"text": "text"}, tokenizer, allow_multi_token).to_dict()
    config = AutoConfig.from_pretrained(model_dir, num_labels=2)
    config.problem_type = "multi_label_classification" if multi_label else "single_label_classification"
    config.prompt = prompt
    return tokenizer, load_prompt_model(model_dir, config, seed=0).eval(), prompt


def batch(prompt, tokenizer, texts, max_length=32):
    columns, _ = encode_prompt(prompt, texts, None, tokenizer, max_length)
    return tokenizer.pad({k: v for k, v in columns.items()}, return_tensors="pt")


@pytest.mark.parametrize("kind", ["bert", "roberta", "distilbert"])
def test_scores_are_the_heads_logits_of_the_label_words_at_the_slot(kind, tiny_bert, tiny_roberta, tiny_distilbert):
    model_dir = {"bert": tiny_bert, "roberta": tiny_roberta, "distilbert": tiny_distilbert}[kind]
    tokenizer, model, prompt = prompt_model(model_dir)
    inputs = batch(prompt, tokenizer, ["the kernel module loads a driver", "network socket binds port server"])
    with torch.no_grad():
        scores = model(**inputs).logits
        plain = AutoModelForMaskedLM.from_pretrained(model_dir).eval()
        features = {k: v for k, v in inputs.items() if k != "mask_position"}
        logits = plain(**features).logits
    at_slot = logits[torch.arange(2), inputs["mask_position"]]
    assert (inputs["input_ids"][torch.arange(2), inputs["mask_position"]] == tokenizer.mask_token_id).all()
    # RoBERTa's label words are spelled as after a space ("Ġkernel"), as the template has one before the slot.
    space = " " if kind == "roberta" else ""
    ids = {w: tokenizer(space + w, add_special_tokens=False)["input_ids"] for w in ("driver", "socket", "port")}
    assert all(len(v) == 1 for v in ids.values())
    expected = torch.stack(
        [(at_slot[:, ids["socket"][0]] + at_slot[:, ids["port"][0]]) / 2, at_slot[:, ids["driver"][0]]], dim=1
    )
    torch.testing.assert_close(scores, expected)
    assert prompt["scoring"] == "logit"


def test_a_multi_token_word_scores_the_mean_log_probability_over_as_many_slots(tiny_bert):
    words = '{"system": "driver", "network": "zqx"}'  # z ##q ##x: three WordPiece tokens in the tiny vocabulary
    with pytest.raises(UsageError, match="3 tokens"):
        prompt_model(tiny_bert, words)
    tokenizer, model, prompt = prompt_model(tiny_bert, words, allow_multi_token=True)
    assert prompt["slots"] == 3 and prompt["scoring"] == "mean_log_prob"
    inputs = batch(prompt, tokenizer, ["the kernel module loads a driver"])
    position = int(inputs["mask_position"][0])
    assert inputs["input_ids"][0, position : position + 3].tolist() == [tokenizer.mask_token_id] * 3
    with torch.no_grad():
        scores = model(**inputs).logits[0]
        plain = AutoModelForMaskedLM.from_pretrained(tiny_bert).eval()
        features = {k: v for k, v in inputs.items() if k != "mask_position"}
        log_probs = plain(**features).logits[0].log_softmax(-1)
    zqx = tokenizer("zqx", add_special_tokens=False)["input_ids"]
    driver = tokenizer.convert_tokens_to_ids("driver")
    expected_network = sum(log_probs[position + j, t] for j, t in enumerate(zqx)) / 3
    torch.testing.assert_close(scores, torch.stack([expected_network, log_probs[position, driver]]))


def test_truncation_cuts_the_text_and_keeps_the_template(tiny_bert):
    tokenizer = AutoTokenizer.from_pretrained(tiny_bert)
    prompt = build_prompt(TEMPLATE, WORDS, LABELS, {"text": "text"}, tokenizer).to_dict()
    columns, truncated = encode_prompt(prompt, ["kernel " * 50, "kernel module"], None, tokenizer, 16)
    assert truncated == 1
    long, short = columns["input_ids"]
    assert len(long) == 16 and len(short) < 16
    tail = tokenizer.convert_ids_to_tokens(long[-6:])
    assert tail == ["kernel", "the", "package", "[MASK]", ".", "[SEP]"]
    assert long[columns["mask_position"][0]] == tokenizer.mask_token_id


def test_prompt_fine_tuning_learns_is_reproducible_and_keeps_a_plain_masked_lm(tiny_bert, task_files, tmp_path):
    extra = ("--seeds", "1", "--num_train_epochs", "10", "--prompt", TEMPLATE, "--verbalizer", WORDS)
    runs = []
    for name in ("a", "b"):
        assert run_cli(*finetune_args(tiny_bert, task_files, tmp_path / name, *extra)) == 0
        with open(tmp_path / name / "results.json") as f:
            runs.append(json.load(f))
    assert runs[0]["aggregate"]["test"]["accuracy"]["mean"] >= 0.9
    assert runs[0]["seeds"][0]["test"] == runs[1]["seeds"][0]["test"]  # the same seed: the same numbers
    assert runs[0]["prompt"]["template"] == TEMPLATE and runs[0]["prompt"]["scoring"] == "logit"
    assert "prompt-based" in (tmp_path / "a" / "README.md").read_text()
    kept = tmp_path / "a" / runs[0]["best_model"]
    reloaded = AutoModelForMaskedLM.from_pretrained(kept)  # plain transformers, the head trained in place
    assert reloaded.config.prompt["verbalizer"]["system"] == ["driver"]
    before = AutoModelForMaskedLM.from_pretrained(tiny_bert).cls.predictions.transform.dense.weight
    assert not torch.equal(before, reloaded.cls.predictions.transform.dense.weight)


def test_multi_label_prompt_fine_tuning_runs(tiny_bert, tmp_path):
    rows = [{**row, "label": [row["label"]] + (["network"] if i % 3 == 0 else [])}
            for i, row in enumerate(separable_task(36, 0))]  # fmt: skip
    files = {name: write_rows(tmp_path / f"{name}.jsonl", rows) for name in ("train", "dev")}
    out = tmp_path / "out"
    extra = ("--seeds", "1", "--prompt", TEMPLATE, "--verbalizer", WORDS, "--keep_models", "none")
    assert run_cli(*finetune_args(tiny_bert, files, out, *extra)) == 0
    with open(out / "results.json") as f:
        results = json.load(f)
    assert results["task_type"] == "multi_label" and results["prompt"]["verbalizer"]["network"] == ["socket", "port"]


@pytest.mark.parametrize(
    "template, words, message",
    [
        ("{text} it is about .", WORDS, "exactly one mask slot"),
        ("{body} it is about {mask} .", WORDS, "{body} names no column"),
        (TEMPLATE, '{"system": "driver"}', "no word for label 'network'"),
        (TEMPLATE, '{"system": " ", "network": "socket"}', "label 'system' has an empty word"),
        (TEMPLATE, '{"system": "driver", "network": "socket", "web": "port"}', "'web' is not a label"),
        (TEMPLATE, '{"system": "driver", "network": "€"}', "not in the tokenizer's vocabulary"),
    ],
)
def test_bad_templates_and_verbalizers_are_one_line_errors_and_write_nothing(
    template, words, message, tiny_bert, task_files, tmp_path, capsys
):
    out = tmp_path / "out"
    assert run_cli(*finetune_args(tiny_bert, task_files, out, "--prompt", template, "--verbalizer", words)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert message in err[-1]
    assert not os.path.exists(out)


def test_a_checkpoint_without_an_mlm_head_is_refused_pointing_to_pretrain(tiny_bert_headless, task_files, tmp_path,
                                                                           capsys):  # fmt: skip
    out = tmp_path / "out"
    argv = finetune_args(tiny_bert_headless, task_files, out, "--prompt", TEMPLATE, "--verbalizer", WORDS)
    assert run_cli(*argv) == 2
    assert "dontstop pretrain" in capsys.readouterr().err
    assert not os.path.exists(out)


def test_prompt_runs_with_fgm_and_ema(tiny_bert, task_files, tmp_path):
    out = tmp_path / "out"
    extra = ("--seeds", "1", "--prompt", TEMPLATE, "--verbalizer", WORDS, "--adversarial", "fgm", "--ema", "0.9")
    assert run_cli(*finetune_args(tiny_bert, task_files, out, *extra, "--keep_models", "none")) == 0
    with open(out / "results.json") as f:
        results = json.load(f)
    assert results["averaging"]["method"] == "ema" and results["prompt"]["scoring"] == "logit"


def test_an_experiment_arm_takes_prompt_options_with_the_verbalizer_beside_the_yaml(tiny_bert, tmp_path):
    import yaml
    from conftest import synthetic_documents, write_jsonl

    from dontstop.experiment import load_experiment

    write_jsonl(tmp_path / "domain.jsonl", synthetic_documents(60, seed=1))
    for name, n in (("train", 24), ("dev", 8)):
        write_rows(tmp_path / f"{name}.jsonl", separable_task(n, 0))
    (tmp_path / "words.json").write_text(WORDS)
    prompt = {"prompt": TEMPLATE, "verbalizer": "words.json"}
    arms = ["tapt", {"name": "tapt-prompt", "arm": "tapt", "finetune": prompt}, {"name": "pcp", "finetune": prompt}]
    config = {"model": tiny_bert, "corpora": {"domain": "domain.jsonl"}, "task": {"train": "train.jsonl",
              "dev": "dev.jsonl"}, "held_out": {"documents": 5}, "inspect": False, "arms": arms}  # fmt: skip
    (tmp_path / "experiment.yaml").write_text(yaml.safe_dump(config))
    plan = load_experiment(str(tmp_path / "experiment.yaml"), str(tmp_path / "runs"))
    head, with_prompt, pcp = plan.arms
    assert "prompt" not in head.finetune.options
    options = with_prompt.finetune.options
    assert options["prompt"] == TEMPLATE and options["verbalizer"] == str(tmp_path / "words.json")
    # TAPT is one stage for both tapt arms; PCP pretrains on the task text in the arm's template.
    assert head.chain == with_prompt.chain and "prompt" not in head.chain[0].options
    assert pcp.chain[0].options["prompt"] == TEMPLATE and pcp.finetune.options["prompt"] == TEMPLATE
    config["arms"] = ["pcp"]
    (tmp_path / "experiment.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(UsageError, match="pcp needs finetune: prompt:"):
        load_experiment(str(tmp_path / "experiment.yaml"), str(tmp_path / "runs"))


@pytest.mark.slow
def test_an_experiment_runs_tapt_with_a_head_and_pcp_with_the_prompt(tiny_bert, tmp_path):
    import yaml
    from conftest import synthetic_documents, write_jsonl

    from dontstop.experiment import load_experiment, run_experiment

    write_jsonl(tmp_path / "domain.jsonl", synthetic_documents(60, seed=1))
    for i, (name, n) in enumerate((("train", 32), ("dev", 12), ("test", 12))):
        write_rows(tmp_path / f"{name}.jsonl", separable_task(n, i))
    prompt = {"prompt": TEMPLATE, "verbalizer": WORDS}
    config = {
        "model": tiny_bert, "corpora": {"domain": "domain.jsonl"}, "inspect": False,
        "task": {"train": "train.jsonl", "dev": "dev.jsonl", "test": "test.jsonl"},
        "held_out": {"documents": 5, "eval_samples": 4, "eval_blocks": 2, "max_seq_length": 32, "batch_size": 8},
        "pretrain": {"max_seq_length": 32, "per_device_train_batch_size": 8, "disable_tqdm": True},
        "budgets": {"tapt": {"max_steps": 4, "line_by_line": True}},
        "finetune": {"seeds": 1, "num_train_epochs": 2, "max_seq_length": 32, "learning_rate": 3e-3,
                     "per_device_train_batch_size": 8, "disable_tqdm": True},
        "arms": ["tapt", {"name": "pcp", "finetune": prompt}],
    }  # fmt: skip
    (tmp_path / "experiment.yaml").write_text(yaml.safe_dump(config))
    summary = run_experiment(load_experiment(str(tmp_path / "experiment.yaml"), str(tmp_path / "runs")))
    tapt, pcp = summary["arms"]
    results = [json.load(open(os.path.join(arm["finetune_dir"], "results.json"))) for arm in (tapt, pcp)]
    assert results[0]["prompt"] is None and results[1]["prompt"]["template"] == TEMPLATE
    assert results[1]["model"] == pcp["stages"][0]["dir"] != tapt["stages"][0]["dir"]


def test_a_pair_template_holds_both_texts_and_cuts_the_longer_first(tiny_bert):
    tokenizer = AutoTokenizer.from_pretrained(tiny_bert)
    columns = {"text": "text", "hypothesis": "pair"}
    prompt = build_prompt("{text} . {mask} , {hypothesis}", WORDS, LABELS, columns, tokenizer).to_dict()
    encoded, truncated = encode_prompt(prompt, ["kernel " * 30], ["socket port"], tokenizer, 16)
    tokens = tokenizer.convert_ids_to_tokens(encoded["input_ids"][0])
    assert truncated == 1 and len(tokens) == 16
    assert tokens[-6:] == [".", "[MASK]", ",", "socket", "port", "[SEP]"]  # the short text whole, the long one cut
    assert tokens[1:10] == ["kernel"] * 9
