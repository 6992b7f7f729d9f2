"""Evidence a user can trust: arms differ only in what they change (weights carried over, heads seeded by name, draws
paired), paired tests and their fallback, Holm's correction, the test-set bootstrap and the power statement."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from conftest import pretrain_args, synthetic_documents, write_jsonl
from helpers import finetune_args, pretrain_cli, run_cli, separable_task, write_rows


@pytest.fixture(scope="module")
def bert_with_pooler(tmp_path_factory):
    """A tiny BERT checkpoint with an MLM head *and* a trained-looking pooler and NSP head (BertForPreTraining), as
    the original BERT checkpoints are: masked-LM training has no use for the pooler."""
    import torch
    from conftest import build_tiny_model
    from transformers import AutoTokenizer, BertForPreTraining

    source = build_tiny_model("bert", tmp_path_factory.mktemp("bert-mlm"))
    torch.manual_seed(3)
    model = BertForPreTraining.from_pretrained(source)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "pooler" in name or "seq_relationship" in name:
                param.normal_()
    target = tmp_path_factory.mktemp("bert-pretraining")
    model.save_pretrained(target)
    AutoTokenizer.from_pretrained(source).save_pretrained(target)
    return str(target)


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    directory = tmp_path_factory.mktemp("task")
    return {
        "train": write_rows(directory / "train.jsonl", separable_task(48, 0)),
        "dev": write_rows(directory / "dev.jsonl", separable_task(16, 1)),
        "test": write_rows(directory / "test.jsonl", separable_task(24, 2)),
    }


def finetuned(model, task, out) -> dict:
    extra = ("--seeds", "2", "--num_train_epochs", "2", "--train_limit", "20", "--keep_models")
    assert run_cli(*finetune_args(model, task, out, *extra)) == 0
    return json.loads((out / "results.json").read_text())


def test_an_arm_that_changes_nothing_scores_exactly_as_the_baseline(bert_with_pooler, task, tmp_path):
    corpus = write_jsonl(tmp_path / "domain.jsonl", synthetic_documents(100, seed=5))
    adapted = str(tmp_path / "adapted")
    metrics = pretrain_cli(
        *pretrain_args(bert_with_pooler, corpus, adapted, "--max_steps", "3", "--learning_rate", "0")
    )
    pooler, nsp = ["bert.pooler.dense.weight", "bert.pooler.dense.bias"], ["cls.seq_relationship.weight"]
    assert set(metrics["carried_weights"]) == {*pooler, *nsp, "cls.seq_relationship.bias"}

    baseline, arm = finetuned(bert_with_pooler, task, tmp_path / "base"), finetuned(adapted, task, tmp_path / "arm")
    assert baseline["new_parameters"] == arm["new_parameters"] == ["classifier.bias", "classifier.weight"]
    for ours, theirs in zip(baseline["seeds"], arm["seeds"], strict=True):
        assert ours["draw"] == theirs["draw"]
        assert ours["dev"] == theirs["dev"] and ours["test"] == theirs["test"]  # the difference is exactly zero
        untimed = [
            [{k: v for k, v in e.items() if "runtime" not in k and "per_second" not in k} for e in r["history"]]
            for r in (ours, theirs)
        ]
        assert untimed[0] == untimed[1]
        for split in ("dev", "test"):
            name = f"seed-{ours['seed']}/predictions_{split}.jsonl"
            assert (tmp_path / "base" / name).read_text() == (tmp_path / "arm" / name).read_text()


def test_the_task_head_is_seeded_by_seed_and_name_whatever_the_checkpoint_lacked(tiny_bert, bert_with_pooler, task):
    """tiny_bert has no pooler, so the library initialises pooler and classifier from one stream; the pooler
    checkpoint lacks only the classifier. The classifier must still come out the same for the same seed."""
    import torch

    from dontstop.finetune.args import FinetuningArguments, TaskArguments
    from dontstop.finetune.setup import load_seeded_model, load_tokenizer_and_config, read_task

    heads = {}
    for name, model in (("no pooler", tiny_bert), ("pooler", bert_with_pooler)):
        task_args = TaskArguments(model_name_or_path=model, train_file=task["train"], validation_file=task["dev"])
        args = FinetuningArguments(output_dir="unused")
        loaded = read_task(task_args, args)
        source, _, config = load_tokenizer_and_config(task_args, loaded)
        model, new = load_seeded_model(loaded, source, config, seed=7)
        heads[name] = (dict(model.classifier.named_parameters()), new)
    assert heads["no pooler"][1] == sorted(["bert.pooler.dense.weight", "bert.pooler.dense.bias", *heads["pooler"][1]])
    for key, value in heads["pooler"][0].items():
        assert torch.equal(value, heads["no pooler"][0][key])


def test_the_paired_test_finds_a_shift_that_welch_drowns_in_the_spread_between_seeds():
    from dontstop.evidence import paired, welch

    base = [0.60, 0.70, 0.80, 0.65, 0.75]  # seeds differ a lot from each other...
    other = [b + d for b, d in zip(base, [0.020, 0.021, 0.019, 0.022, 0.018], strict=True)]  # ...the arm by 2 points
    assert welch(base, other)["p_value"] > 0.5
    found = paired(base, other)
    assert found["p_value"] < 0.001 and found["ci_low"] > 0.015 and found["test"] == "paired t-test"
    assert found["wilcoxon_p"] == pytest.approx(0.0625)  # 5 seeds, all one way: the smallest p the test has


def test_holm_matches_a_hand_computed_example():
    from dontstop.evidence import holm

    # sorted: 0.005 x 4 = 0.02; 0.01 x 3 = 0.03; 0.03 x 2 = 0.06; 0.04 x 1 = 0.04, raised to the running 0.06
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.2, None, 0.9]) == [0.4, None, 0.9]


def test_bootstrap_intervals_cover_a_known_difference_at_the_nominal_rate():
    """400 simulated test sets of 300 examples from a population where one classifier is right 75% of the time and
    the other, correlated with it, 70%: the interval of the accuracy difference covers the true 0.05 in 95% ± 3%."""
    from dontstop.evidence import bootstrap_difference

    rng = np.random.default_rng(1)
    covered = 0
    for _ in range(400):
        gold = rng.choice(["a", "b"], size=300)
        first, second = rng.random(300), rng.random(300)
        base_right = first < 0.7
        other_right = np.where(base_right, second < 0.9, second < 0.4)  # P = 0.63 + 0.3 x 0.4 = 0.75
        flip = {"a": "b", "b": "a"}
        base = [g if r else flip[g] for g, r in zip(gold, base_right, strict=True)]
        other = [g if r else flip[g] for g, r in zip(gold, other_right, strict=True)]
        interval = bootstrap_difference("single_label", list(gold), [base], [other], ["accuracy"])["accuracy"]
        covered += interval["low"] <= 0.05 <= interval["high"]
    assert 0.92 <= covered / 400 <= 0.98


def test_vectorised_scores_equal_scikit_learn():
    from sklearn.metrics import f1_score

    from dontstop.evidence import single_label_scores

    rng = np.random.default_rng(0)
    gold, predicted = rng.integers(0, 5, size=(20, 40)), rng.integers(0, 6, size=(20, 40))
    scores = single_label_scores(gold, predicted, 6)
    for row in range(20):
        assert scores["macro_f1"][row] == pytest.approx(
            f1_score(gold[row], predicted[row], average="macro", zero_division=0)
        )
        assert scores["accuracy"][row] == pytest.approx((gold[row] == predicted[row]).mean())


def test_the_power_statement_follows_the_spread():
    from dontstop.evidence import design_power, power

    tight = design_power([0.70, 0.71, 0.72], [0.72, 0.73, 0.74], paired_design=False)
    loose = design_power([0.60, 0.71, 0.82], [0.62, 0.73, 0.84], paired_design=False)
    assert tight["detectable"] < loose["detectable"] and tight["seeds_needed"] < loose["seeds_needed"]
    assert power(tight["detectable"], tight["sd"], 3, paired_design=False) == pytest.approx(0.8, abs=1e-3)


def write_seeds(directory, scores: list[float], draws: list[str]) -> str:
    os.makedirs(directory, exist_ok=True)
    file = {"path": "test.jsonl", "sha256": "abc", "examples": 4}
    results = {
        "task_type": "single_label",
        "labels": ["a", "b"],
        "metrics": ["accuracy"],
        "test_file": file,
        "validation_file": file,
        "seeds": [
            {"seed": 42 + i, "draw": draw, "dev": {"accuracy": v}, "test": {"accuracy": v}}
            for i, (v, draw) in enumerate(zip(scores, draws, strict=True))
        ],
    }
    (directory / "results.json").write_text(json.dumps(results))
    return str(directory)


def test_compare_pairs_runs_with_equal_draws_and_says_why_it_does_not(tmp_path):
    from dontstop.compare import compare_runs, load_run, to_markdown

    base = write_seeds(tmp_path / "base", [0.60, 0.70, 0.80], ["d1", "d2", "d3"])
    same = write_seeds(tmp_path / "same", [0.62, 0.71, 0.82], ["d1", "d2", "d3"])
    other = write_seeds(tmp_path / "other", [0.62, 0.71, 0.82], ["d1", "x2", "d3"])
    comparison = compare_runs([load_run(base), load_run(same), load_run(other)])
    paired_row, welch_row = (row["metrics"]["accuracy"] for row in comparison["runs"][1:])
    assert paired_row["test"] == "paired t-test" and paired_row["p_value"] < 0.05
    assert welch_row["test"] == "Welch's t-test" and welch_row["p_value"] > 0.5
    assert paired_row["p_holm"] == pytest.approx(min(1, 2 * paired_row["p_value"]))  # two runs compared
    lines = to_markdown(comparison).splitlines()
    said = [line for line in lines if line.startswith(("same,", "other,"))]
    assert said[0].startswith("same, accuracy: smallest Δ this design detects")  # paired: nothing to explain
    assert said[1:] == [
        f"other, accuracy: not paired with base (different training draws at seed 43): Welch's test; smallest Δ "
        f"this design detects (80% power): {100 * welch_row['power']['detectable']:.1f}; seeds per arm to detect the "
        f"observed Δ: {welch_row['power']['seeds_needed']}."
    ]


def test_a_design_check_is_reported_and_kept_out_of_the_verdict_and_the_correction(tmp_path):
    from dontstop.compare import compare_runs, load_run
    from dontstop.report import verdict

    draws = ["d1", "d2", "d3"]
    base = write_seeds(tmp_path / "base", [0.60, 0.70, 0.80], draws)
    better = write_seeds(tmp_path / "better", [0.62, 0.71, 0.82], draws)
    same = write_seeds(tmp_path / "same", [0.60, 0.70, 0.80], draws)
    off = write_seeds(tmp_path / "off", [0.60, 0.71, 0.80], draws)
    runs = [load_run(f"{name}={path}") for name, path in (("base", base), ("better", better), ("same", same))]
    comparison = compare_runs(runs, checks={"same": "identity"})
    comparison["primary_metric"] = "accuracy"
    better_row = comparison["runs"][1]["metrics"]["accuracy"]
    assert better_row["p_holm"] == better_row["p_value"]  # a family of one: the check is not counted
    assert comparison["runs"][2]["check"]["passed"]
    text = verdict(comparison)["text"]
    assert text.startswith("**better** is best") and text.endswith("Identity check **same**: the same accuracy as "
                                                                     "base on 3 of 3 seeds.")  # fmt: skip
    comparison = compare_runs([*runs[:2], load_run(f"off={off}")], checks={"off": "identity"})
    comparison["primary_metric"] = "accuracy"
    assert not comparison["runs"][2]["check"]["passed"]
    assert "**Identity check off failed**: the same accuracy as base on only 2 of 3 seeds (largest difference " \
        "+1.0 points)" in verdict(comparison)["text"]  # fmt: skip
