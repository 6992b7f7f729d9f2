"""The training methods of `dontstop finetune` (UDA, self-training, R-Drop, SupCon, PGD, FreeLB) and its unlabeled
text: each method's defining property, a seed reproducing its numbers, the leakage guard, and bad input."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from helpers import finetune_args, run_cli, separable_task, write_rows, write_task_files

from dontstop.select.pools import fingerprint


@pytest.fixture
def task_files(tmp_path):
    return write_task_files(tmp_path)


def classifier(path: str, labels: int = 2):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=labels)
    return model, AutoTokenizer.from_pretrained(path)


def context(model, tokenizer, tmp_path, texts=(), **options):
    from dontstop.finetune import FinetuningArguments
    from dontstop.finetune.methods import MethodContext
    from dontstop.finetune.unlabeled import UnlabeledPool
    from dontstop.tasks import Task, TaskSplit

    args = FinetuningArguments(output_dir=str(tmp_path or "unused"), **options)
    split = TaskSplit("t", ["a"], ["x"], [1])
    pool = UnlabeledPool(list(texts), [None] * len(texts), ["file"] * len(texts))
    return MethodContext(model, tokenizer, args, Task("single_label", ["x", "y"], split, split), 7, 32, pool)


def batch(tokenizer, texts, labels=None) -> dict:
    encoded = dict(tokenizer(texts, padding=True, return_tensors="pt"))
    if labels is not None:
        encoded["labels"] = torch.tensor(labels)
    return encoded


TEXTS = ["the kernel module loads a driver", "network socket binds port server", "the daemon reads its config file"]


# --- UDA ----------------------------------------------------------------------------------------------------------


def test_uda_consistency_is_zero_for_the_identity_augmentation(tiny_bert_no_dropout, tiny_bert, tmp_path):
    from dontstop.finetune.methods.uda import UDA

    model, tokenizer = classifier(tiny_bert_no_dropout)
    model.train()
    identity = UDA(context(model, tokenizer, tmp_path, TEXTS, uda_weight=1.0, uda_augmentation="dropout"))
    clean, noisy = identity.batch(step=3, device="cpu")
    assert torch.equal(clean["input_ids"], noisy["input_ids"])
    assert identity.consistency(model, clean, noisy).item() == 0.0  # exactly
    deleting = UDA(context(model, tokenizer, tmp_path, TEXTS, uda_weight=1.0, uda_augmentation="delete:0.5"))
    assert deleting.consistency(model, *deleting.batch(step=3, device="cpu")).item() > 0
    sharpened = UDA(context(model, tokenizer, tmp_path, TEXTS, uda_augmentation="dropout", uda_temperature=0.4))
    assert sharpened.consistency(model, clean, noisy).item() > 0  # a sharpened target is not the prediction
    # With dropout, the identity augmentation is the dropout-only one: two passes differ.
    noisy_model, _ = classifier(tiny_bert)
    noisy_model.train()
    assert identity.consistency(noisy_model, clean, noisy).item() > 0


def test_uda_confidence_masks_unsure_targets(tiny_bert_no_dropout, tmp_path):
    from dontstop.finetune.methods.uda import UDA

    model, tokenizer = classifier(tiny_bert_no_dropout)
    model.train()
    options = dict(uda_weight=1.0, uda_augmentation="delete:0.5")
    unmasked = UDA(context(model, tokenizer, tmp_path, TEXTS, **options))
    clean, noisy = unmasked.batch(step=0, device="cpu")
    assert unmasked.consistency(model, clean, noisy).item() > 0
    # A random 2-label head is never 99.99% sure: the mask removes every text.
    masked = UDA(context(model, tokenizer, tmp_path, TEXTS, uda_confidence=0.9999, **options))
    assert masked.consistency(model, clean, noisy).item() == 0.0


def test_tsa_drops_examples_above_the_threshold():
    from dontstop.finetune.methods.uda import annealed_loss, tsa_threshold

    assert tsa_threshold("linear", 0.0, 4) == pytest.approx(0.25)  # starts at 1/K: nothing is learnt yet
    assert tsa_threshold("linear", 0.5, 4) == pytest.approx(0.625)
    for schedule in ("linear", "exp", "log"):
        values = [tsa_threshold(schedule, t / 10, 4) for t in range(11)]
        # rising from 1/K to 1 (the exp and log schedules to within e^-5 of either end)
        assert values == sorted(values) and values[0] == pytest.approx(0.25, abs=0.01), schedule
        assert values[-1] == pytest.approx(1.0, abs=0.01), schedule
    assert tsa_threshold("exp", 0.5, 4) < tsa_threshold("linear", 0.5, 4) < tsa_threshold("log", 0.5, 4)

    # Example 0: its correct class at p = 0.9, above the threshold 0.5; example 1 at p = 0.3, below it.
    logits = torch.log(torch.tensor([[0.9, 0.1], [0.7, 0.3]])).requires_grad_(True)
    labels = torch.tensor([0, 1])
    loss = annealed_loss(logits, labels, threshold=0.5)
    assert loss.item() == pytest.approx(-math.log(0.3), rel=1e-5)  # example 1 alone
    loss.backward()
    assert logits.grad[0].abs().sum() == 0 and logits.grad[1].abs().sum() > 0
    assert annealed_loss(logits, labels, threshold=1.0).item() == pytest.approx(F.cross_entropy(logits, labels).item())


# --- R-Drop and SupCon --------------------------------------------------------------------------------------------


def test_rdrop_adds_nothing_without_dropout_and_a_divergence_with_it(tiny_bert_no_dropout, tiny_bert, tmp_path):
    from dontstop.finetune.methods.rdrop import RDrop, symmetric_kl

    assert symmetric_kl(torch.tensor([[1.0, 2.0]]), torch.tensor([[1.0, 2.0]])).item() == 0.0
    assert symmetric_kl(torch.tensor([[1.0, 2.0]]), torch.tensor([[2.0, 1.0]])).item() > 0
    for path, changes in ((tiny_bert_no_dropout, False), (tiny_bert, True)):
        model, tokenizer = classifier(path)
        model.train()
        inputs = batch(tokenizer, TEXTS, [0, 1, 0])
        outputs = model(**inputs)
        method = RDrop(context(model, tokenizer, tmp_path, rdrop_alpha=4.0))
        loss = method.loss(None, model, inputs, outputs, outputs.loss)
        assert (abs(loss.item() - outputs.loss.item()) > 1e-4) == changes, path


def test_rdrop_builds_on_the_trainers_own_supervised_loss(tiny_bert, task_files, tmp_path):
    argv = finetune_args(tiny_bert, task_files, tmp_path / "out", "--seeds", "1", "--train_limit", "12")
    assert run_cli(*argv, "--rdrop_alpha", "1", "--class_weights", "inverse", "--loss", "focal") == 0
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert set(results["methods"]) == {"rdrop"} and results["imbalance"]["loss"] == "focal"
    assert math.isfinite(results["seeds"][0]["history"][0]["loss"])


def test_supcon_by_hand_and_its_preference_for_aligned_classes():
    from dontstop.finetune.methods.contrastive import supcon

    features = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    labels = torch.tensor([0, 0, 1])
    # Anchors 0 and 1 have one positive each (cosine 1) against one negative (cosine 0); anchor 2 has none.
    expected = -math.log(math.exp(1 / 0.5) / (math.exp(1 / 0.5) + math.exp(0)))
    assert supcon(features, labels, 0.5).item() == pytest.approx(expected, rel=1e-6)
    apart = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.1]])  # the positives point away from each other
    assert supcon(apart, labels, 0.5) > supcon(features, labels, 0.5)
    assert supcon(features, torch.tensor([0, 1, 2]), 0.5).item() == 0.0  # no positive pair, no term


# --- adversaries ----------------------------------------------------------------------------------------------------


def adversarial_step(model, tokenizer, method_class, **options):
    """(embedding weight before, after; gradients of the clean pass; gradients after the method's step)."""
    model.train()
    inputs = batch(tokenizer, TEXTS, [0, 1, 0])

    def step():
        loss = model(**inputs).loss
        loss.backward()
        return loss.detach()

    weight = model.get_input_embeddings().weight
    before = weight.detach().clone()
    model.zero_grad()
    step()
    clean = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    method = method_class.build(context(model, tokenizer, None, **options))
    method.training_step(step)
    after = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return before, weight.detach().clone(), clean, after


def test_pgd_restores_the_embeddings_bit_for_bit_and_adds_the_last_attack_gradient(tiny_bert_no_dropout, tmp_path):
    from dontstop.finetune.methods.pgd import PGD

    model, tokenizer = classifier(tiny_bert_no_dropout)
    options = dict(adversarial="pgd", adv_alpha=0.5, adv_epsilon=0.3)
    before, after, clean, three = adversarial_step(model, tokenizer, PGD, adv_steps=3, **options)
    assert torch.equal(before, after)  # copied back, not subtracted: bit for bit
    before, after, clean, one = adversarial_step(model, tokenizer, PGD, adv_steps=1, **options)
    assert torch.equal(before, after)

    # One step: the embeddings moved by min(alpha, epsilon) along the clean gradient, whose pass's gradient is added
    # to the clean one. Computed here by hand.
    weight = model.get_input_embeddings().weight
    g = clean["bert.embeddings.word_embeddings.weight"]
    with torch.no_grad():
        weight.add_(g, alpha=0.3 / torch.linalg.vector_norm(g).item())
    model.zero_grad()
    model(**batch(tokenizer, TEXTS, [0, 1, 0])).loss.backward()
    with torch.no_grad():
        weight.copy_(before)
    for name, param in model.named_parameters():
        torch.testing.assert_close(one[name], clean[name] + param.grad, rtol=1e-5, atol=1e-7)
    name = "classifier.weight"
    assert not torch.allclose(three[name], one[name])  # later steps moved on

    # Projection: however many steps, the perturbation never leaves the ball of radius epsilon.
    pgd = PGD(model, epsilon=0.2, alpha=1.0, steps=1)
    assert torch.linalg.vector_norm(pgd.project(torch.full((4, 4), 1.0))).item() == pytest.approx(0.2)

    # Projection: however many steps, the perturbation never leaves the ball of radius epsilon.
    pgd = PGD(model, epsilon=0.2, alpha=1.0, steps=1)
    assert torch.linalg.vector_norm(pgd.project(torch.full((4, 4), 1.0))).item() == pytest.approx(0.2)


def test_freelb_never_writes_the_embeddings_and_averages_its_passes(tiny_bert_no_dropout, tmp_path):
    from dontstop.finetune.methods.freelb import FreeLB

    model, tokenizer = classifier(tiny_bert_no_dropout)
    options = dict(adversarial="freelb", adv_alpha=0.5, adv_epsilon=1.0)
    before, after, clean, one_pass = adversarial_step(model, tokenizer, FreeLB, adv_steps=1, **options)
    assert torch.equal(before, after)
    for name in clean:  # one pass with a zero perturbation is the clean step, exactly
        assert torch.equal(one_pass[name], clean[name]), name
    before, after, clean, attacked = adversarial_step(model, tokenizer, FreeLB, adv_steps=3, **options)
    assert torch.equal(before, after)
    assert not torch.allclose(attacked["classifier.weight"], clean["classifier.weight"])
    # Vanishing steps: three passes of nearly the clean batch, whose mean (not sum) is nearly the clean gradient.
    tiny = dict(options, adv_alpha=1e-7)
    before, after, clean, averaged = adversarial_step(model, tokenizer, FreeLB, adv_steps=3, **tiny)
    for name in clean:
        torch.testing.assert_close(averaged[name], clean[name], rtol=1e-4, atol=1e-7)


def test_adversaries_need_the_embedding_gradient(tiny_bert, task_files, tmp_path, capsys):
    argv = finetune_args(tiny_bert, task_files, tmp_path / "x", "--adapter", "lora", "--adversarial", "pgd")
    assert run_cli(*argv) == 2
    assert "--adversarial with --adapter lora: PGD follows the embeddings' gradient" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


# --- self-training and the unlabeled text -------------------------------------------------------------------------


def test_pseudo_labels_by_threshold_and_class_balanced_top_k():
    import numpy as np

    from dontstop.finetune.methods.self_training import pseudo_label

    probabilities = np.array([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8], [0.95, 0.05], [0.45, 0.55], [0.3, 0.7]])
    assert pseudo_label(probabilities, 0.7, None).tolist() == [0, 2, 3, 5]
    assert pseudo_label(probabilities, None, 1).tolist() == [2, 3]  # the most confident of each class
    assert pseudo_label(probabilities, 0.7, 2).tolist() == [0, 2, 3, 5]
    assert pseudo_label(probabilities, 0.99, 2).tolist() == []


def test_self_training_never_pseudo_labels_a_dev_or_test_text(tiny_bert, task_files, tmp_path):
    dev = [json.loads(line) for line in open(task_files["dev"])]
    test = [json.loads(line) for line in open(task_files["test"])]
    # The unlabeled file holds every dev and test text (one in other case and spacing) among new ones.
    tricky = {**test[0], "text": "  " + test[0]["text"].upper()}
    pool = write_rows(tmp_path / "pool.jsonl", separable_task(30, 9) + dev + test[1:] + [tricky])
    out = tmp_path / "st"
    argv = finetune_args(tiny_bert, task_files, out, "--seeds", "1", "--train_limit", "8", "--num_train_epochs", "2")
    extra = ["--unlabeled_file", pool, "--unlabeled_from_train", "--self_training_rounds", "1"]
    assert run_cli(*argv, *extra, "--pseudo_label_threshold", "0.01") == 0  # takes every text it may
    forbidden = {fingerprint(row["text"]) for row in dev + test}
    labelled = [json.loads(line) for line in open(out / "seed-42" / "pseudo_labels-round-1.jsonl")]
    assert len(labelled) == 30 + 64 - 8  # the new texts and the training texts the draw left out
    assert not {fingerprint(row["text"]) for row in labelled} & forbidden
    results = json.loads((out / "results.json").read_text())
    (stats,) = results["unlabeled"]["files"]
    assert stats["leaked"] == {"dev": 24, "test": 40} and stats["kept"] == 30
    seed = results["seeds"][0]
    assert [r["round"] for r in seed["rounds"]] == [0, 1] and seed["chosen_round"] in (0, 1)
    added = seed["rounds"][1]
    assert added["pseudo_labels"] == 86 and added["gold_known"] == 56  # the training texts' labels are known
    right = sum(row["label"] == row["gold"] for row in labelled if row["gold"] is not None)
    assert added["pseudo_label_accuracy"] == pytest.approx(right / 56)
    assert added["train_examples"] == 8 + 86 and "test" in added and "dev" in added
    assert seed["unlabeled"] == {"texts": 86, "from_train": 56, "gold_known": 56}


def test_unlabeled_limit_draws_the_same_texts_for_a_seed(task_files):
    from dontstop.finetune import TaskArguments
    from dontstop.finetune.unlabeled import load_unlabeled
    from dontstop.tasks import load_task

    task = load_task(task_files["train"], task_files["dev"], task_files["test"])
    source = load_unlabeled(TaskArguments(unlabeled_from_train=True, unlabeled_limit=10), task)
    first, again, other = (source.for_seed(task, range(8), seed) for seed in (1, 1, 2))
    assert len(first) == 10 and first.texts == again.texts and first.texts != other.texts
    drawn = {task.train.texts[i] for i in range(8)}
    assert not drawn & set(first.texts)  # the labelled examples are never also unlabeled


METHOD_RUNS = {  # name: (the methods, their options)
    "uda+rdrop+contrastive+freelb": [
        "--uda_weight", "1", "--unlabeled_ratio", "2", "--uda_confidence", "0.5", "--uda_temperature", "0.5",
        "--rdrop_alpha", "1", "--contrastive_weight", "0.5", "--adversarial", "freelb", "--adv_steps", "2",
    ],
    "self-training+pgd+uda": [
        "--self_training_rounds", "1", "--pseudo_label_top_k", "4", "--self_training_noise", "delete:0.2",
        "--adversarial", "pgd", "--adv_steps", "2", "--uda_weight", "0.5", "--tsa", "exp",
    ],
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(METHOD_RUNS))
def test_a_seed_gives_the_same_numbers_twice(name, tiny_bert, task_files, tmp_path):
    pool = write_rows(tmp_path / "pool.jsonl", separable_task(40, 7))
    runs = []
    for copy in ("a", "b", "plain"):
        extra = [] if copy == "plain" else ["--unlabeled_file", pool, *METHOD_RUNS[name]]
        argv = finetune_args(tiny_bert, task_files, tmp_path / copy, "--seeds", "1", "--train_limit", "12")
        assert run_cli(*argv, "--num_train_epochs", "2", *extra) == 0
        runs.append(json.loads((tmp_path / copy / "results.json").read_text()))
    first, second, plain = (run["seeds"][0] for run in runs)
    assert first["test"] == second["test"] and numbers(first["history"]) == numbers(second["history"])
    assert numbers(first.get("rounds") or []) == numbers(second.get("rounds") or [])
    assert first["draw"] == plain["draw"]  # paired with plain fine-tuning
    assert numbers(first["history"]) != numbers(plain["history"])  # and the methods changed training
    assert set(runs[0]["methods"]) == set(name.replace("self-training", "self_training").split("+"))


def numbers(entries: list[dict]) -> list[dict]:
    """Log entries without their timings."""
    timing = ("runtime", "per_second", "seconds")
    return [{k: v for k, v in entry.items() if not any(t in k for t in timing)} for entry in entries]


# --- bad input ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "extra, error",
    [
        (["--unlabeled_file", "EMPTY", "--uda_weight", "1"], "--unlabeled_file {tmp}/empty.jsonl: the file is empty"),
        (["--unlabeled_file", "MISSING", "--uda_weight", "1"], "--unlabeled_file {tmp}/missing.jsonl: no such file"),
        (["--unlabeled_file", "TEST", "--uda_weight", "1"], "--unlabeled_file {tmp}/test.jsonl: the test file"),
        (["--unlabeled_from_train", "--self_training_rounds", "1", "--pseudo_label_threshold", "1.5"],
         "--pseudo_label_threshold 1.5: must be in (0, 1]"),
        (["--unlabeled_from_train", "--self_training_rounds", "1", "--pseudo_label_threshold", "0"],
         "--pseudo_label_threshold 0.0: must be in (0, 1]"),
        (["--unlabeled_from_train", "--uda_weight", "1", "--uda_confidence", "2"],
         "--uda_confidence 2.0: must be in (0, 1]"),
        (["--unlabeled_from_train", "--uda_weight", "1", "--uda_augmentation", "shuffle:0.1"],
         "--uda_augmentation shuffle:0.1: unknown augmentation 'shuffle'"),
        (["--unlabeled_from_train", "--self_training_rounds", "1", "--pseudo_label_top_k", "2",
          "--self_training_noise", "delete:1.5"], "--self_training_noise delete:1.5: the rate of delete"),
        (["--unlabeled_from_train", "--self_training_rounds", "1"], "--self_training_rounds needs"),
        (["--uda_weight", "1"], "--uda_weight reads unlabeled text: give --unlabeled_file or --unlabeled_from_train"),
        (["--unlabeled_from_train"], "--unlabeled_from_train: no method reads unlabeled text"),
        (["--tsa", "linear"], "--tsa is UDA's training-signal annealing"),
        (["--unlabeled_from_train", "--uda_weight", "1", "--tsa", "linear", "--loss", "focal"],
         "--tsa linear with --loss focal --class_weights none: TSA masks the plain cross-entropy"),
    ],
)  # fmt: skip
def test_bad_method_input_is_one_line_exit_2_nothing_written(extra, error, tiny_bert, task_files, tmp_path, capsys):
    (tmp_path / "empty.jsonl").write_text("")
    paths = {"EMPTY": "empty.jsonl", "MISSING": "missing.jsonl", "TEST": "test.jsonl"}
    extra = [str(tmp_path / paths[a]) if a in paths else a for a in extra]
    out = tmp_path / "out"
    assert run_cli(*finetune_args(tiny_bert, task_files, out, *extra)) == 2
    err = capsys.readouterr().err.strip()
    assert error.format(tmp=tmp_path) in err and len(err.splitlines()) == 1, err
    assert not out.exists()


def test_methods_refuse_a_task_they_cannot_train(tiny_bert, tmp_path, capsys):
    rows = [{"text": ["the", "kernel"], "label": ["B-X", "O"]}] * 6
    files = {"train": write_rows(tmp_path / "t.jsonl", rows), "dev": write_rows(tmp_path / "d.jsonl", rows)}
    assert run_cli(*finetune_args(tiny_bert, files, tmp_path / "out", "--rdrop_alpha", "1")) == 2
    assert "--rdrop_alpha: rdrop trains single_label tasks, not a token task" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
