"""`dontstop finetune`: task files, metrics, seeds, FGM, EMA, and the output directory."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch
from conftest import WORDS
from helpers import finetune_args, run_cli, separable_task, write_rows

from dontstop.errors import UsageError


@pytest.fixture
def task_files(tmp_path):
    return {
        "train": write_rows(tmp_path / "train.jsonl", separable_task(64, 0)),
        "dev": write_rows(tmp_path / "dev.jsonl", separable_task(24, 1)),
        "test": write_rows(tmp_path / "test.jsonl", separable_task(40, 2)),
    }


def test_tiny_model_learns_separable_task_and_writes_outputs(tiny_bert, task_files, tmp_path):
    from transformers import AutoModelForSequenceClassification

    out = tmp_path / "ft"
    assert run_cli(*finetune_args(tiny_bert, task_files, out, "--seeds", "2", "--keep_models")) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["task_type"] == "single_label" and results["labels"] == ["network", "system"]
    assert [r["seed"] for r in results["seeds"]] == [42, 43]
    accuracy = results["aggregate"]["test"]["accuracy"]
    assert accuracy["mean"] > 0.85, accuracy  # chance is 0.5
    assert accuracy["n"] == 2 and accuracy["std"] == pytest.approx(np.std(accuracy["values"], ddof=1))
    assert results["test_file"]["examples"] == 40 and len(results["test_file"]["sha256"]) == 64
    predictions = [json.loads(line) for line in (out / "seed-42" / "predictions_test.jsonl").open()]
    assert len(predictions) == 40 and predictions[0]["line"] == 1
    hits = np.mean([p["label"] == p["prediction"] for p in predictions])
    assert hits == pytest.approx(results["seeds"][0]["test"]["accuracy"])
    assert "mean ± std" in (out / "README.md").read_text()
    model = AutoModelForSequenceClassification.from_pretrained(out / "seed-42" / "model")
    assert model.config.id2label == {0: "network", 1: "system"}


def test_seeds_reproduce_and_differ(tiny_bert, task_files, tmp_path, capsys):
    runs = []
    for name, seeds in (("a", "5,6"), ("b", "5,6")):
        assert (
            run_cli(
                *finetune_args(tiny_bert, task_files, tmp_path / name, "--seeds", seeds, "--num_train_epochs", "1")
            )
            == 0
        )
        runs.append(json.loads((tmp_path / name / "results.json").read_text()))
    first, second = runs
    assert [r["test"] for r in first["seeds"]] == [r["test"] for r in second["seeds"]]
    losses = [[h["loss"] for h in r["history"] if "loss" in h] for r in first["seeds"]]
    assert losses[0] != losses[1]  # different seeds, different runs

    from dontstop.cli import main

    capsys.readouterr()  # the Trainer's printed logs
    assert main(["compare", str(tmp_path / "a"), str(tmp_path / "b"), "--format", "json"]) == 0
    comparison = json.loads(capsys.readouterr().out)
    assert comparison["runs"][1]["metrics"]["accuracy"]["delta"] == 0 and comparison["runs"][1]["same_seeds"]


def test_few_shot_train_limit_is_stratified(tiny_bert, task_files, tmp_path):
    from dontstop.tasks import stratified_sample

    labels = ["a"] * 60 + ["b"] * 30 + ["c"] * 10
    picked = stratified_sample(labels, 20, seed=3)
    counts = {c: sum(labels[i] == c for i in picked) for c in "abc"}
    assert counts == {"a": 12, "b": 6, "c": 2} and len(set(picked)) == 20
    assert not np.array_equal(picked, stratified_sample(labels, 20, seed=4))
    assert np.array_equal(picked, stratified_sample(labels, 20, seed=3))
    rare = stratified_sample(["a"] * 98 + ["b", "c"], 5, seed=0)  # every class kept when n allows
    assert {(["a"] * 98 + ["b", "c"])[i] for i in rare} == {"a", "b", "c"}

    out = tmp_path / "few"
    assert run_cli(*finetune_args(tiny_bert, task_files, out, "--seeds", "1", "--train_limit", "10")) == 0
    assert json.loads((out / "results.json").read_text())["seeds"][0]["train_examples"] == 10


def test_fgm_perturbs_along_the_gradient_and_restores_exactly():
    from dontstop.finetune.methods import FGM

    torch.manual_seed(0)
    embeddings = torch.nn.Embedding(10, 4)
    original = embeddings.weight.detach().clone()
    fgm = FGM(embeddings, epsilon=0.5)
    assert not fgm.attack()  # no gradient yet: nothing to do
    embeddings(torch.tensor([1, 3])).pow(2).sum().backward()
    grad = embeddings.weight.grad.clone()
    assert fgm.attack()
    delta = embeddings.weight.detach() - original
    assert torch.allclose(delta, 0.5 * grad / grad.norm(), atol=1e-6)
    assert delta[[0, 2, 4]].abs().sum() == 0  # rows of tokens not in the batch do not move
    fgm.restore()
    assert torch.equal(embeddings.weight.detach(), original)

    # with gradient accumulation, the direction is this batch's gradient, not what earlier micro-batches left
    earlier = fgm.gradient_snapshot()
    embeddings(torch.tensor([2])).sum().backward()
    assert fgm.attack(earlier)
    delta = embeddings.weight.detach() - original
    assert delta[[1, 3]].abs().sum() == 0 and delta[2].abs().sum() > 0
    fgm.restore()


def test_fgm_changes_training(tiny_bert_no_dropout, task_files, tmp_path):
    results = {}
    for name, extra in (("plain", ()), ("fgm", ("--adversarial", "fgm", "--adv_epsilon", "1.0"))):
        args = finetune_args(
            tiny_bert_no_dropout, task_files, tmp_path / name, "--seeds", "1", "--num_train_epochs", "1"
        )
        assert run_cli(*args, *extra) == 0
        results[name] = json.loads((tmp_path / name / "results.json").read_text())["seeds"][0]
    plain = [h["loss"] for h in results["plain"]["history"] if "loss" in h]
    fgm = [h["loss"] for h in results["fgm"]["history"] if "loss" in h]
    assert plain != fgm


def test_ema_weights_differ_from_raw_and_are_restored(tiny_bert):
    from transformers import AutoModelForSequenceClassification

    from dontstop.averaging import EMACallback, warmed_up_decay

    model = AutoModelForSequenceClassification.from_pretrained(tiny_bert, num_labels=2)
    positions = model.bert.embeddings.position_ids.clone()
    ema = EMACallback(0.9)
    ema.on_train_begin(None, None, None, model=model)
    ema.on_step_end(None, None, None, model=model)  # the first update copies the weights
    weight = model.classifier.weight
    first = weight.detach().clone()
    with torch.no_grad():
        weight.add_(1.0)
    ema.on_step_end(None, None, None, model=model)
    raw = weight.detach().clone()
    d = warmed_up_decay(0.9, 1)
    assert d == pytest.approx(2 / 11)  # the decay warms up: an early average follows the weights closely
    with ema.swapped_in(model):
        assert torch.allclose(model.classifier.weight, d * first + (1 - d) * raw, atol=1e-6)
        assert not torch.allclose(model.classifier.weight, raw)
        assert torch.equal(model.bert.embeddings.position_ids, positions)  # integer buffers are never averaged
    assert torch.equal(model.classifier.weight.detach(), raw)
    assert warmed_up_decay(0.9, 1000) == 0.9

    zero = EMACallback(0.0)  # decay 0: the average is the raw weights
    zero.on_train_begin(None, None, None, model=model)
    with torch.no_grad():
        weight.add_(1.0)
    zero.on_step_end(None, None, None, model=model)
    with zero.swapped_in(model):
        assert torch.equal(model.classifier.weight.detach(), weight.detach())


def test_ema_run_reports_averaged_weights(tiny_bert_no_dropout, task_files, tmp_path):
    scores = {}
    for name, extra in (("plain", ()), ("ema", ("--ema", "0.9"))):
        args = finetune_args(
            tiny_bert_no_dropout, task_files, tmp_path / name, "--seeds", "1", "--num_train_epochs", "2"
        )
        assert run_cli(*args, *extra, "--keep_models") == 0
        scores[name] = json.loads((tmp_path / name / "results.json").read_text())["seeds"][0]
    # same seed, same data, same updates: only the evaluated (and kept) weights differ
    plain_losses = [h["loss"] for h in scores["plain"]["history"] if "loss" in h]
    ema_losses = [h["loss"] for h in scores["ema"]["history"] if "loss" in h]
    assert plain_losses == pytest.approx(ema_losses)
    for record in scores.values():  # the kept weights are the best evaluation's: rescoring them gives its score
        best = max(h["eval_macro_f1"] for h in record["history"] if "eval_macro_f1" in h)
        assert record["dev"]["macro_f1"] == pytest.approx(best)
    from safetensors.torch import load_file

    plain = load_file(tmp_path / "plain" / "seed-42" / "model" / "model.safetensors")
    averaged = load_file(tmp_path / "ema" / "seed-42" / "model" / "model.safetensors")
    assert not torch.allclose(plain["classifier.weight"], averaged["classifier.weight"])


def test_token_classification_scores_a_known_prediction_set():
    from dontstop.scoring import score

    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["O", "B-ORG", "I-ORG", "O"]]
    predicted = [["B-PER", "I-PER", "O", "B-ORG"], ["O", "B-ORG", "O", "O"]]
    # entities: gold {PER(0-1), LOC(3), ORG(1-2)}; predicted {PER(0-1) right, ORG(3) wrong type, ORG(1) wrong span}
    metrics = score("token", gold, predicted)
    assert metrics["entity_precision"] == pytest.approx(1 / 3)
    assert metrics["entity_recall"] == pytest.approx(1 / 3)
    assert metrics["entity_f1"] == pytest.approx(1 / 3)
    assert metrics["token_accuracy"] == pytest.approx(6 / 8)
    # per type F1: PER 1, LOC 0, ORG 0 -> macro 1/3
    assert metrics["entity_macro_f1"] == pytest.approx(1 / 3)
    assert score("token", [["I-PER", "I-PER"]], [["B-PER", "I-PER"]])["entity_f1"] == 1.0  # conlleval: I after O


def test_classification_metrics_by_hand():
    from dontstop.scoring import score

    gold = ["a", "a", "a", "b", "b", "c"]
    predicted = ["a", "a", "b", "b", "c", "c"]
    metrics = score("single_label", gold, predicted)
    # F1: a 2*1*(2/3)/(1+2/3)=0.8, b 0.5, c 2*0.5*1/1.5=2/3
    assert metrics["macro_f1"] == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    assert metrics["accuracy"] == pytest.approx(4 / 6) == metrics["micro_f1"]
    multi = score("multi_label", [["x", "y"], ["y"]], [["x"], ["y", "z"]])
    assert multi["subset_accuracy"] == 0
    assert multi["micro_f1"] == pytest.approx(2 * 2 / (2 * 2 + 1 + 1))  # tp 2, fp 1, fn 1


def test_token_task_end_to_end(tiny_bert, tmp_path):
    rng = random.Random(0)

    def sentence():
        words, tags = [], []
        for _ in range(rng.randint(3, 7)):
            if rng.random() < 0.3:  # "kernel module" is an entity, everything else is O
                words += ["kernel", "module"]
                tags += ["B-SYS", "I-SYS"]
            else:
                words.append(rng.choice(WORDS[20:]))
                tags.append("O")
        return {"text": words, "label": tags}

    files = {
        name: write_rows(tmp_path / f"{name}.jsonl", [sentence() for _ in range(n)])
        for name, n in (("train", 60), ("dev", 20), ("test", 20))
    }
    out = tmp_path / "ner"
    assert run_cli(*finetune_args(tiny_bert, files, out, "--seeds", "1", "--num_train_epochs", "6")) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["task_type"] == "token" and results["labels"] == ["O", "B-SYS", "I-SYS"]
    assert results["aggregate"]["test"]["entity_f1"]["mean"] > 0.8
    row = json.loads((out / "seed-42" / "predictions_test.jsonl").open().readline())
    assert len(row["prediction"]) == len(row["label"])


def test_text_pairs_and_multi_label(tiny_bert, tmp_path):
    rng = random.Random(0)
    pair_rows = []
    for i in range(48):
        a = " ".join(rng.choices(WORDS[:20], k=4))
        same = i % 2 == 0
        b = a if same else " ".join(rng.choices(WORDS[24:44], k=4))
        pair_rows.append({"premise": a, "hypothesis": b, "label": int(same)})
    files = {name: write_rows(tmp_path / f"pair_{name}.jsonl", pair_rows) for name in ("train", "dev")}
    args = ["--text_column", "premise", "--text_pair_column", "hypothesis", "--seeds", "1", "--num_train_epochs", "6"]
    assert run_cli(*finetune_args(tiny_bert, files, tmp_path / "pairs", *args)) == 0
    results = json.loads((tmp_path / "pairs" / "results.json").read_text())
    assert results["labels"] == ["0", "1"] and "test" not in results["aggregate"]
    # the label can be read off the second text alone: without it, accuracy would be chance (0.5)
    assert results["aggregate"]["dev"]["accuracy"]["mean"] > 0.7

    multi = [{"text": r["text"], "label": [r["label"], "any"]} for r in separable_task(48, 3)]
    files = {name: write_rows(tmp_path / f"multi_{name}.jsonl", multi) for name in ("train", "dev")}
    assert run_cli(*finetune_args(tiny_bert, files, tmp_path / "multi", "--seeds", "1")) == 0
    results = json.loads((tmp_path / "multi" / "results.json").read_text())
    assert results["task_type"] == "multi_label" and results["labels"] == ["any", "network", "system"]
    assert set(results["aggregate"]["dev"]) == {"micro_f1", "macro_f1", "subset_accuracy"}


def test_csv_and_tsv_task_files(tmp_path):
    from dontstop.tasks import load_task

    (tmp_path / "t.csv").write_text('text,label\n"a, b",x\nc,y\n', encoding="utf-8")
    (tmp_path / "d.tsv").write_text("text\tlabel\nq\tx\n", encoding="utf-8")
    task = load_task(str(tmp_path / "t.csv"), str(tmp_path / "d.tsv"))
    assert task.train.texts == ["a, b", "c"] and task.labels == ["x", "y"] and task.dev.lines == [2]
    # a spreadsheet's byte-order mark is not part of the first column's name; a stray quote in a TSV is text
    (tmp_path / "bom.csv").write_bytes("\ufefftext,label\nq,x\nr,y\n".encode())
    (tmp_path / "q.tsv").write_text('text\tlabel\n"quoted start\tx\nnext row\ty\n', encoding="utf-8")
    task = load_task(str(tmp_path / "bom.csv"), str(tmp_path / "q.tsv"))
    assert task.train.texts == ["q", "r"] and task.dev.texts == ['"quoted start', "next row"]
    numbers = "\n".join(f'{{"text": "t", "label": {n}}}' for n in (10, 2, 1))
    (tmp_path / "n.jsonl").write_text(numbers, encoding="utf-8")
    assert load_task(str(tmp_path / "n.jsonl"), str(tmp_path / "n.jsonl")).labels == ["1", "2", "10"]


@pytest.mark.parametrize(
    "rows, error",
    [
        ([{"text": "  ", "label": "system"}], "dev.jsonl:2: empty text in column 'text'"),
        ([{"text": "kernel", "label": "games"}], "dev.jsonl:2: label 'games' never occurs in the training file"),
        ([{"body": "kernel", "label": "system"}], "dev.jsonl:2: no column 'text' (set --text_column"),
        ([{"text": "kernel", "label": None}], "dev.jsonl:2: 'label' must hold one label"),
    ],
)
def test_bad_dev_files_name_the_line(tiny_bert, task_files, tmp_path, capsys, rows, error):
    dev = write_rows(tmp_path / "dev.jsonl", [{"text": "kernel module", "label": "system"}, *rows])
    out = tmp_path / "out"
    assert run_cli(*finetune_args(tiny_bert, {**task_files, "dev": dev}, out)) == 2
    message = capsys.readouterr().err.strip()
    assert error in message and "\n" not in message
    assert not out.exists()


def test_seed_lists_from_the_command_line_or_yaml():
    from dontstop.finetune import parse_seeds

    assert parse_seeds("3", 42) == parse_seeds(3, 42) == [42, 43, 44]
    assert parse_seeds("1,5", 0) == parse_seeds([1, 5], 0) == [1, 5]
    with pytest.raises(UsageError, match="distinct"):
        parse_seeds("1,1", 0)


def test_bad_options_are_one_line_errors(tiny_bert, task_files, tmp_path, capsys):
    for extra, error in (
        (("--seeds", "two"), "--seeds expects a count"),
        (("--ema", "1.5"), "--ema 1.5"),
        (("--train_limit", "0"), "--train_limit 0"),
        (("--metric_for_best_model", "f2"), "--metric_for_best_model f2: a single_label task offers accuracy"),
        (("--max_seq_length", "4096"), "--max_seq_length 4096: the model takes 3 to 128 tokens"),
    ):
        assert run_cli(*finetune_args(tiny_bert, task_files, tmp_path / "x", *extra)) == 2
        assert error in capsys.readouterr().err
    args = finetune_args(tiny_bert, task_files, tmp_path / "x")
    at = args.index("--output_dir")
    assert run_cli(*args[:at], *args[at + 2 :]) == 2
    assert "--output_dir is required" in capsys.readouterr().err
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    assert run_cli(*finetune_args(tiny_bert, task_files, tmp_path / "full")) == 2
    assert "is not empty" in capsys.readouterr().err
    assert (tmp_path / "full" / "keep.txt").read_text() == "mine"
    with pytest.raises(UsageError, match="never occurs"):
        from dontstop.tasks import load_task

        bad = write_rows(tmp_path / "t.jsonl", [{"text": ["a"], "label": ["B-X"]}])
        dev = write_rows(tmp_path / "d.jsonl", [{"text": ["a"], "label": ["B-Y"]}])
        load_task(bad, dev)


def test_resume_reuses_finished_seeds_and_refuses_changed_settings(tiny_bert, task_files, tmp_path, capsys):
    out = tmp_path / "ft"
    base = finetune_args(tiny_bert, task_files, out, "--num_train_epochs", "1")
    assert run_cli(*base, "--seeds", "1") == 0
    first = json.loads((out / "seed-42" / "result.json").read_text())
    (out / "seed-42" / "result.json").write_text(json.dumps({**first, "marker": True}))
    assert run_cli(*base, "--seeds", "2", "--resume") == 0  # one more seed; seed 42 is not trained again
    results = json.loads((out / "results.json").read_text())
    assert results["seeds"][0]["marker"] and [r["seed"] for r in results["seeds"]] == [42, 43]
    assert "marker" not in results["seeds"][1]
    assert run_cli(*base, "--seeds", "2", "--resume", "--learning_rate", "1e-4") == 2
    assert "--learning_rate differ" in capsys.readouterr().err
    assert run_cli(*finetune_args(tiny_bert, task_files, tmp_path / "none"), "--resume") == 2
    assert "no earlier run" in capsys.readouterr().err


def test_validation_limit_scores_the_same_dev_subset(tiny_bert, task_files, tmp_path):
    out = tmp_path / "ft"
    args = finetune_args(tiny_bert, task_files, out, "--seeds", "2", "--num_train_epochs", "1")
    assert run_cli(*args, "--validation_limit", "10") == 0
    results = json.loads((out / "results.json").read_text())
    assert results["validation_file"]["examples"] == 10
    lines = [[json.loads(x)["line"] for x in (out / f"seed-{s}" / "predictions_dev.jsonl").open()] for s in (42, 43)]
    assert len(lines[0]) == 10 and lines[0] == lines[1]
    golds = [json.loads(x)["label"] for x in (out / "seed-42" / "predictions_dev.jsonl").open()]
    assert sorted(set(golds)) == ["network", "system"]


def test_finetunes_a_pretrain_output_directory(tiny_bert_headless, corpus, task_files, tmp_path):
    from conftest import pretrain_cli

    pretrained = tmp_path / "dapt"
    assert pretrain_cli(tiny_bert_headless, corpus, str(pretrained), "--max_steps", "4") == 0
    out = tmp_path / "ft"
    assert run_cli(*finetune_args(str(pretrained), task_files, out, "--seeds", "1", "--num_train_epochs", "1")) == 0
    assert json.loads((out / "results.json").read_text())["model"] == str(pretrained)


def test_invalid_utf8_and_malformed_json_name_the_line(tmp_path):
    from dontstop.tasks import read_task_file

    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b'{"text": "ok", "label": "a"}\n{"text": "\xff", "label": "b"}\n')
    with pytest.raises(UsageError, match=r"bad.jsonl:2: invalid UTF-8"):
        read_task_file(str(bad), "auto")
    bad.write_text('{"text": "ok", "label": "a"}\n\n{"text": \n', encoding="utf-8")
    with pytest.raises(UsageError, match=r"bad.jsonl:3: malformed JSON"):
        read_task_file(str(bad), "auto")
    tokens = tmp_path / "tok.jsonl"
    tokens.write_text('{"text": ["a", "b"], "label": ["O"]}\n', encoding="utf-8")
    with pytest.raises(UsageError, match=r"tok.jsonl:1: 2 words but 1 tags"):
        read_task_file(str(tokens), "auto")


def test_best_epoch_keeps_the_best_weights_and_stops_after_patience():
    from types import SimpleNamespace

    from dontstop.finetune import BestEpoch

    model = torch.nn.Linear(2, 1)
    control = SimpleNamespace(should_training_stop=False)

    def evaluate(callback, epoch, value, name="macro_f1"):
        with torch.no_grad():
            model.weight.fill_(epoch)  # the weights say which epoch they come from
        callback.on_evaluate(None, SimpleNamespace(epoch=float(epoch)), control, {f"eval_{name}": value}, model)

    best = BestEpoch("macro_f1", patience=2)
    for epoch, value in enumerate([float("nan"), 0.5, 0.7, 0.6], start=1):  # a diverged first epoch never wins
        evaluate(best, epoch, value)
    assert best.best_epoch == 3 and not control.should_training_stop
    evaluate(best, 5, 0.65)
    assert control.should_training_stop  # two evaluations without gain
    best.restore(model)
    assert torch.all(model.weight == 3)

    lowest = BestEpoch("loss", patience=0)  # the loss is the one metric where lower is better
    for epoch, value in enumerate([0.9, 0.4, 0.6], start=1):
        evaluate(lowest, epoch, value, "loss")
    assert lowest.best_epoch == 2
