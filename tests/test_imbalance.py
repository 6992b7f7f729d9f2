"""Imbalanced classes in `dontstop finetune`: class weights, focal loss, class-aware sampling, per-class scores."""

from __future__ import annotations

import json
import random
from collections import Counter

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import WORDS
from helpers import finetune_args, run_cli, separable_task, write_rows

from dontstop.errors import UsageError
from dontstop.finetune.losses import CrossEntropy, FocalLoss, class_counts, class_weights
from dontstop.finetune.sampler import ClassAwareSampler

# Three classes a tiny model separates, in proportions 8 : 3 : 1.
THIRDS = {"big": WORDS[:14], "mid": WORDS[14:28], "rare": WORDS[28:42]}


def imbalanced_task(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    labels = ["big"] * 8 + ["mid"] * 3 + ["rare"]
    rows = []
    for i in range(n):
        label = labels[i % len(labels)]
        rows.append({"text": " ".join(rng.choices(THIRDS[label], k=rng.randint(4, 9))), "label": label})
    return rows


@pytest.fixture
def imbalanced_files(tmp_path):
    return {
        "train": write_rows(tmp_path / "train.jsonl", imbalanced_task(96, 0)),
        "dev": write_rows(tmp_path / "dev.jsonl", imbalanced_task(24, 1)),
        "test": write_rows(tmp_path / "test.jsonl", imbalanced_task(36, 2)),
    }


def test_class_weights_match_a_hand_computation():
    counts = [10, 30, 60]
    # inverse: 1/10, 1/30, 1/60 = 0.1, 0.0333, 0.0167 (sum 0.15), scaled to mean 1: x 3 / 0.15 = x 20
    assert class_weights(counts, "inverse") == pytest.approx([2.0, 2 / 3, 1 / 3])
    # sqrt_inverse: 0.316228, 0.182574, 0.129099 (sum 0.627901), x 3 / 0.627901
    assert class_weights(counts, "sqrt_inverse") == pytest.approx([1.510879, 0.872307, 0.616814], rel=1e-5)
    # effective, beta 0.9: 0.1 / (1 - 0.9^n) = 0.153534, 0.104427, 0.100180 (sum 0.358141), x 3 / 0.358141
    assert class_weights(counts, "effective", beta=0.9) == pytest.approx([1.286092, 0.874741, 0.839167], rel=1e-5)
    assert class_weights(counts, "effective", beta=0.0) == pytest.approx([1, 1, 1])  # beta 0: no reweighting
    assert class_weights(counts, "none") is None
    # a class the draw lacks weighs 0, and the others still average 1
    assert class_weights([0, 10, 30], "inverse") == pytest.approx([0.0, 1.5, 0.5])
    # counts from each task type's label column
    assert class_counts([0, 2, 2, 1, 2], "single_label", 4).tolist() == [1, 1, 3, 0]
    assert class_counts([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]], "multi_label", 3).tolist() == [1, 0, 2]
    assert class_counts([[-100, 1, 1, -100], [-100, 0, -100]], "token", 2).tolist() == [1, 2]


def test_focal_loss_with_gamma_0_is_cross_entropy_and_focuses_on_hard_examples():
    torch.manual_seed(0)
    logits, labels = torch.randn(12, 4), torch.randint(0, 4, (12,))
    weights = torch.tensor([0.5, 2.0, 1.0, 0.5])
    for w in (None, weights):
        expected = F.cross_entropy(logits, labels, weight=w)
        assert FocalLoss("single_label", w, gamma=0.0)(logits, labels) == pytest.approx(expected.item(), rel=1e-6)
        assert CrossEntropy("single_label", w)(logits, labels) == pytest.approx(expected.item(), rel=1e-6)
    # multi-label: per-label binary cross-entropy, a label's weight on its positive examples
    targets = (torch.rand(12, 4) > 0.6).float()
    for w in (None, weights):
        expected = F.binary_cross_entropy_with_logits(logits, targets, pos_weight=w).item()
        assert FocalLoss("multi_label", w, gamma=0.0)(logits, targets) == pytest.approx(expected, rel=1e-6)
    # token: positions labelled -100 do not count
    tags = torch.randint(0, 4, (3, 5))
    tags[:, 0] = -100
    token_logits = torch.randn(3, 5, 4)
    expected = F.cross_entropy(token_logits.reshape(-1, 4), tags.reshape(-1), weight=weights).item()
    assert FocalLoss("token", weights, gamma=0.0)(token_logits, tags) == pytest.approx(expected, rel=1e-6)

    # gamma 2: an example the model already gets right loses almost all of its loss, a wrong one keeps most
    easy, hard = torch.tensor([[4.0, 0.0]]), torch.tensor([[0.0, 2.0]])
    label = torch.tensor([0])
    ratio = {
        name: (FocalLoss("single_label", gamma=2.0)(x, label) / F.cross_entropy(x, label)).item()
        for name, x in (("easy", easy), ("hard", hard))
    }
    assert ratio["easy"] < 0.001 and ratio["hard"] > 0.7


def test_plain_cross_entropy_is_the_models_own_loss(tiny_bert):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(tiny_bert, num_labels=3).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_bert)
    batch = tokenizer(["the kernel module loads", "a driver for the device"], return_tensors="pt", padding=True)
    labels = torch.tensor([2, 0])
    outputs = model(**batch, labels=labels)
    assert CrossEntropy("single_label")(outputs.logits, labels).item() == pytest.approx(outputs.loss.item(), rel=1e-6)
    assert CrossEntropy("single_label").plain and not CrossEntropy("single_label", [1.0, 1, 1]).plain
    assert not FocalLoss("single_label", gamma=0.0).plain  # the trainer runs our loss, not the model's


def test_balanced_sampler_gives_every_class_an_equal_share_of_each_epoch():
    labels = [0] * 50 + [1] * 30 + [2] * 5 + [3] * 2
    sampler = ClassAwareSampler(labels, power=0.0, seed=7)
    orders = []
    for epoch in range(3):
        sampler.set_epoch(epoch)
        order = list(sampler)
        orders.append(order)
        assert len(order) == len(sampler) == len(labels)
        counts = Counter(labels[i] for i in order)
        assert max(counts.values()) - min(counts.values()) <= 1 and len(counts) == 4, counts
    # the large class shows each of its 50 examples before any repeats: 44 different ones in the first two epochs,
    # and by the third every one of them, none more than twice
    big = [[i for i in order if labels[i] == 0] for order in orders]
    assert len(set(big[0] + big[1])) == len(big[0] + big[1])
    assert set(Counter(big[0] + big[1] + big[2]).values()) <= {1, 2} and len(set(big[0] + big[1] + big[2])) == 50
    assert orders[0] != orders[1]  # a new order each epoch
    sampler.set_epoch(1)
    assert list(sampler) == orders[1]  # a function of (seed, epoch)
    assert list(ClassAwareSampler(labels, 0.0, seed=8)) != orders[0]
    # sqrt: places in proportion to the square root of each class's size
    sqrt = Counter(labels[i] for i in ClassAwareSampler(labels, power=0.5, seed=7))
    share = np.sqrt([50, 30, 5, 2]) / np.sqrt([50, 30, 5, 2]).sum() * len(labels)
    assert all(abs(sqrt[c] - share[c]) < 1 for c in range(4)), (sqrt, share)


def test_imbalance_options_train_and_are_recorded(tiny_bert, imbalanced_files, tmp_path):
    out = tmp_path / "ft"
    extra = ("--seeds", "1", "--class_weights", "inverse", "--loss", "focal", "--focal_gamma", "1.5")
    assert run_cli(*finetune_args(tiny_bert, imbalanced_files, out, *extra)) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["imbalance"] == {"class_weights": "inverse", "loss": "focal", "sampler": "random",
                                    "focal_gamma": 1.5}  # fmt: skip
    seed = results["seeds"][0]
    # 96 training examples: 64 big, 24 mid, 8 rare -> inverse weights 1/64, 1/24, 1/8 scaled to mean 1
    raw = np.array([1 / 64, 1 / 24, 1 / 8])
    expected = dict(zip(["big", "mid", "rare"], raw * 3 / raw.sum(), strict=True))
    assert seed["class_weights"] == pytest.approx(expected, rel=1e-5)
    assert seed["test"]["accuracy"] > 0.7  # it learns (two thirds of the examples are "big")
    per_class = seed["per_class"]["test"]
    assert {name: row["support"] for name, row in per_class.items()} == {"big": 24, "mid": 9, "rare": 3}
    macro = np.mean([row["f1"] for row in per_class.values()])
    assert macro == pytest.approx(seed["test"]["macro_f1"])
    assert results["per_class"]["test"]["rare"]["f1"]["values"] == [per_class["rare"]["f1"]]
    readme = (out / "README.md").read_text()
    assert "Per class, test" in readme and "| rare | 3 |" in readme
    assert "inverse class weights, focal loss (gamma 1.5)" in readme


def test_balanced_sampling_lifts_the_rare_classes_of_a_tiny_task(tiny_bert, imbalanced_files, tmp_path):
    """Plain training of the tiny model on 8 : 3 : 1 data mostly predicts the large class; with every class drawn
    equally often it learns all three."""
    macro = {}
    for name, extra in (("plain", ()), ("balanced", ("--sampler", "balanced"))):
        assert run_cli(*finetune_args(tiny_bert, imbalanced_files, tmp_path / name, "--seeds", "2", *extra)) == 0
        results = json.loads((tmp_path / name / "results.json").read_text())
        assert results["imbalance"]["sampler"] == ("balanced" if extra else "random")
        macro[name] = results["aggregate"]["test"]["macro_f1"]["values"]
    assert min(macro["balanced"]) > max(macro["plain"]) + 0.2, macro


def test_uniform_weights_train_like_the_models_own_loss(tiny_bert_no_dropout, tmp_path):
    """On a balanced task inverse weights are all 1: our cross-entropy then trains as the model's own loss does."""
    files = {
        "train": write_rows(tmp_path / "train.jsonl", separable_task(32, 0)),
        "dev": write_rows(tmp_path / "dev.jsonl", separable_task(16, 1)),
    }
    losses = {}
    for name, extra in (("plain", ()), ("weighted", ("--class_weights", "inverse"))):
        args = finetune_args(tiny_bert_no_dropout, files, tmp_path / name, "--seeds", "1", "--num_train_epochs", "2")
        assert run_cli(*args, *extra) == 0
        seed = json.loads((tmp_path / name / "results.json").read_text())["seeds"][0]
        losses[name] = [h["loss"] for h in seed["history"] if "loss" in h]
        assert ("class_weights" in seed) == (name == "weighted")
    assert losses["plain"] == pytest.approx(losses["weighted"], rel=1e-4)


def test_bad_imbalance_options_are_one_line_errors(tiny_bert, tmp_path, capsys):
    files = {
        "train": write_rows(tmp_path / "train.jsonl", [{"text": "a b", "label": ["x", "y"]}] * 4),
        "dev": write_rows(tmp_path / "dev.jsonl", [{"text": "a b", "label": ["x"]}] * 2),
    }
    for extra, error in (
        (("--sampler", "balanced"), "--sampler balanced: class-aware sampling needs a single_label task"),
        (("--class_weights_beta", "1"), "--class_weights_beta 1.0: must be in [0, 1)"),
        (("--focal_gamma", "-1"), "--focal_gamma -1.0: must be in [0, inf)"),
    ):
        assert run_cli(*finetune_args(tiny_bert, files, tmp_path / "x", *extra)) == 2
        assert error in capsys.readouterr().err
        assert not (tmp_path / "x").exists()


def test_per_class_scores_by_hand_and_old_results_still_load():
    from dontstop.records import FinetuneResults
    from dontstop.scoring import per_class

    gold = ["a", "a", "b", "c", "c", "c"]
    predicted = ["a", "b", "b", "c", "c", "a"]
    scores = per_class("single_label", gold, predicted, ["a", "b", "c"])
    assert scores["a"] == pytest.approx({"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2})
    assert scores["b"] == pytest.approx({"precision": 0.5, "recall": 1.0, "f1": 2 / 3, "support": 1})
    assert scores["c"] == pytest.approx({"precision": 1.0, "recall": 2 / 3, "f1": 0.8, "support": 3})
    multi = per_class("multi_label", [["a", "b"], ["b"]], [["a"], ["b", "c"]], ["a", "b", "c"])
    assert multi["b"]["recall"] == 0.5 and multi["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    token = per_class("token", [["B-PER", "O", "B-LOC"]], [["B-PER", "O", "O"]], ["O", "B-PER", "B-LOC"])
    assert token == {
        "LOC": {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1},
        "PER": {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 1},
    }
    old = FinetuneResults.from_dict(
        {"task_type": "single_label", "labels": ["a"], "metrics": ["accuracy"],
         "seeds": [{"seed": 1, "dev": {"accuracy": 0.5}}]}
    )  # fmt: skip
    assert old.per_class is None and old.imbalance is None and old.classes("dev") == []
    with pytest.raises(UsageError):
        FinetuneResults.from_dict({"task_type": "single_label"})
