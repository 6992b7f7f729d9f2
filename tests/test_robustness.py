"""Crash-proof and bad-input-proof: every bad input one line and exit 2 with nothing written, checkpoints whole or
absent under kill -9, one owner per output directory, and a resumed run's record as if it had not stopped."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml
from conftest import pretrain_args, synthetic_documents, write_jsonl
from helpers import finetune_args, separable_task, weights, write_rows

from dontstop.cli import main


def write_bytes(path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


@pytest.fixture
def inputs(tmp_path, tiny_bert):
    """Good inputs for every command, and bad ones to swap in."""
    d = tmp_path
    corpus = write_jsonl(d / "corpus.jsonl", synthetic_documents(60))
    task = {
        "train": write_rows(d / "train.jsonl", separable_task(24, 0)),
        "dev": write_rows(d / "dev.jsonl", separable_task(8, 1)),
    }
    ragged = write_bytes(d / "ragged.csv", b"text,id\nthe kernel module,1\nthe daemon reads,2,extra\n")
    return {"model": tiny_bert, "corpus": corpus, "task": task, "ragged": ragged, "dir": d}


def pretrain(i, out, *extra, corpus=None):
    return ["pretrain", *pretrain_args(i["model"], corpus or i["corpus"], out, *extra)]


def corpora(i, corpus):
    return ["--corpus", f"a={corpus}", "--corpus", f"b={i['corpus']}"]


def mine(corpus, out):
    return ["mine", "--corpus", f"a={corpus}", "--output_dir", out]


def finetune(i, out, **files):
    return ["finetune", *finetune_args(i["model"], {**i["task"], **files}, out)]


MIXED_LABELS = b'{"text": "a b", "label": 1}\n{"text": "c d", "label": "1"}\n{"text": "e", "label": 2}\n'
UNWRITABLE = "/proc/dontstop/out"

CASES = {
    # name: (argv builder taking (inputs, output dir), what the one line says)
    "pretrain ragged csv": (
        lambda i, o: pretrain(i, o, corpus=i["ragged"]),
        "ragged.csv:3: 3 fields, but the header has 2",
    ),
    "inspect ragged csv": (lambda i, o: ["inspect", *corpora(i, i["ragged"]), "--output_dir", o], "ragged.csv:3"),
    "mine ragged csv": (lambda i, o: mine(i["ragged"], o), "ragged.csv:3"),
    "select ragged csv": (
        lambda i, o: ["select", "--task_file", i["task"]["train"], "--pool", f"p={i['ragged']}", "--output_dir", o],
        "ragged.csv:3",
    ),
    "mlm probability above 1": (lambda i, o: pretrain(i, o, "--mlm_probability", "1.5"), "--mlm_probability 1.5"),
    "mlm probability 0": (lambda i, o: pretrain(i, o, "--mlm_probability", "0"), "must be in (0, 1]"),
    "negative sequence length": (lambda i, o: pretrain(i, o, "--max_seq_length", "-5"), "--max_seq_length -5"),
    "zero sequence length": (lambda i, o: pretrain(i, o, "--max_seq_length", "0"), "--max_seq_length 0"),
    "negative learning rate": (lambda i, o: pretrain(i, o, "--learning_rate", "-0.001"), "--learning_rate -0.001"),
    "pretrain output not writable": (lambda i, o: pretrain(i, UNWRITABLE), "is not writable"),
    "finetune output not writable": (lambda i, o: finetune(i, UNWRITABLE), "is not writable"),
    "inspect output not writable": (
        lambda i, o: ["inspect", *corpora(i, i["corpus"]), "--output_dir", UNWRITABLE],
        "is not writable",
    ),
    "mine output not writable": (lambda i, o: mine(i["corpus"], UNWRITABLE), "is not writable"),
    "mined NUL bytes": (lambda i, o: mine(write_bytes(i["dir"] / "nul.txt", bytes(4096)), o), "NUL bytes"),
    "labels mixing numbers and strings": (
        lambda i, o: finetune(i, o, train=write_bytes(i["dir"] / "mixed.jsonl", MIXED_LABELS)),
        "mixes numbers and strings (a number on line 1, a string on line 2)",
    ),
    "a directory as the task file": (lambda i, o: finetune(i, o, dev=str(i["dir"])), "a directory, not a file"),
    "a directory as the words file": (
        lambda i, o: ["vocab", "extend", "--model_name_or_path", i["model"], "--words", str(i["dir"]),
                      "--output_dir", o],
        "a directory, not a file",
    ),
    "an unknown option": (lambda i, o: pretrain(i, o, "--learning_speed", "1"), "see dontstop pretrain --help"),
}  # fmt: skip


def exit_code(argv: list[str]) -> int:
    """What the shell would see: argparse reports by raising SystemExit, the stages by returning."""
    try:
        return main(argv)
    except SystemExit as exited:
        return exited.code


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_one_line_exit_2_and_nothing_written(case, inputs, tmp_path, capsys):
    build, said = CASES[case]
    out = str(tmp_path / "out")
    code = exit_code(build(inputs, out))
    err = capsys.readouterr().err.strip()
    assert code == 2 and said in err, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert not os.path.exists(out)


def test_a_tokenizer_that_knows_none_of_the_text_is_refused_unless_allowed(inputs, tmp_path, capsys):
    chinese = write_jsonl(tmp_path / "zh.jsonl", ["中文文本" * 20] * 40)
    from transformers import BertTokenizer

    english_only = tmp_path / "english-only"
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *"abcdefghijklmnopqrstuvwxyz"]
    BertTokenizer(vocab={token: i for i, token in enumerate(vocab)}).save_pretrained(english_only)
    out = tmp_path / "out"
    argv = pretrain(inputs, str(out), "--tokenizer_name", str(english_only), "--max_steps", "2", corpus=chinese)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "of the first batch's tokens are the unknown token '[UNK]'" in err and "--allow_unknown_tokens" in err
    assert not out.exists()
    assert main([*argv, "--allow_unknown_tokens"]) == 0


def test_run_checks_every_input_before_the_first_stage(tiny_bert, tmp_path):
    from dontstop.errors import UsageError
    from dontstop.experiment import load_experiment

    data = tmp_path / "data"
    data.mkdir()
    write_jsonl(data / "domain.jsonl", synthetic_documents(40, seed=1))
    one = write_jsonl(data / "one.jsonl", ["a single document"])
    write_rows(data / "train.jsonl", separable_task(24, 0))
    write_rows(data / "dev.jsonl", separable_task(8, 1))
    bad_utf8 = write_bytes(data / "latin1.jsonl", b'{"text": "caf\xe9"}\n')
    base = {"model": tiny_bert, "task": {"train": "data/train.jsonl", "dev": "data/dev.jsonl"}, "arms": ["baseline"],
            "held_out": {"documents": 4}}  # fmt: skip
    for corpora, said in (
        ({"domain": "data/one.jsonl"}, "corpora.domain: 1 documents, and held_out.documents holds 4 out of"),
        ({"domain": "data/latin1.jsonl"}, f"{bad_utf8}:1: invalid UTF-8"),
        (
            {"domain": "data/domain.jsonl", "general": "data/missing.jsonl"},
            "corpora.general: data/missing.jsonl: no such",
        ),
    ):
        path = tmp_path / "x.yaml"
        path.write_text(yaml.safe_dump({**base, "corpora": corpora}))
        with pytest.raises(UsageError, match=said):
            load_experiment(str(path), str(tmp_path / "out"))
    assert one and not (tmp_path / "out").exists()
    (tmp_path / "bad.yaml").write_bytes(b"model: caf\xe9\n")
    with pytest.raises(UsageError, match=r"bad\.yaml:1: invalid UTF-8"):
        load_experiment(str(tmp_path / "bad.yaml"))


PAUSE_IN_SAVE = """
import sys, time, torch
real = torch.save
def slow(obj, f, *args, **kwargs):
    real(obj, f, *args, **kwargs)
    if str(f).endswith("optimizer.pt") and "checkpoint-8" in str(f):
        open(sys.argv[1], "w").close()  # the checkpoint is half-written: weights and optimizer, no trainer state
        time.sleep(600)
torch.save = slow
from dontstop.cli import main
sys.exit(main(sys.argv[2:]))
"""


def killed_while_saving(argv: list[str], marker) -> None:
    """Run `dontstop ARGV` in a subprocess, kill -9 it while it writes checkpoint-8, wait for it to die."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([sys.executable, "-c", PAUSE_IN_SAVE, str(marker), *argv], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.time() + 300
    while not marker.exists():
        assert process.poll() is None and time.time() < deadline, "the run ended before its checkpoint at step 8"
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.wait()


@pytest.fixture
def one_thread():
    """The killed runs use one thread: the runs compared with them bit for bit must too (sums split over threads
    round differently)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.slow
@pytest.mark.usefixtures("one_thread")
def test_a_kill_while_a_checkpoint_is_written_leaves_it_absent_and_last_resumes_exactly(tiny_bert, corpus, tmp_path):
    common = ["--max_steps", "12", "--save_strategy", "steps", "--save_steps", "4", "--dataloader_num_workers", "0"]
    straight = str(tmp_path / "straight")
    assert main(["pretrain", *pretrain_args(tiny_bert, corpus, straight, *common)]) == 0
    out = tmp_path / "killed"
    killed_while_saving(["pretrain", *pretrain_args(tiny_bert, corpus, str(out), *common)], tmp_path / "marker")
    assert sorted(n for n in os.listdir(out) if n.startswith("checkpoint-")) == ["checkpoint-4"]  # 8 never appeared
    assert any(n.startswith(".staging-") for n in os.listdir(out))  # the dead process's half checkpoint
    assert (
        main(["pretrain", *pretrain_args(tiny_bert, corpus, str(out), *common, "--resume_from_checkpoint", "last")])
        == 0
    )
    assert not any(n.startswith(".staging-") for n in os.listdir(out))
    ours, theirs = weights(out), weights(straight)
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs)
    resumed, whole = (
        json.loads((out / "metrics.json").read_text()),
        json.loads(open(f"{straight}/metrics.json").read()),
    )
    for key in ("eval_validation_loss", "eval_validation_accuracy"):  # the evaluation before training survives
        assert resumed["before"][key] == whole["before"][key]
    assert resumed["train"]["train_loss"] == pytest.approx(whole["train"]["train_loss"], rel=1e-6)


@pytest.mark.slow
@pytest.mark.usefixtures("one_thread")
def test_an_experiment_killed_in_a_checkpoint_resumes_its_pretraining_stage_exactly(tiny_bert, tmp_path):
    from dontstop.experiment import load_experiment

    data = tmp_path / "data"
    data.mkdir()
    write_jsonl(data / "domain.jsonl", synthetic_documents(80, seed=1))
    write_rows(data / "train.jsonl", separable_task(48, 0))
    write_rows(data / "dev.jsonl", separable_task(16, 1))
    config = {
        "model": tiny_bert,
        "corpora": {"domain": "data/domain.jsonl"},
        "task": {"train": "data/train.jsonl", "dev": "data/dev.jsonl"},
        "held_out": {"documents": 4, "eval_samples": 4, "eval_blocks": 2, "max_seq_length": 32, "batch_size": 8},
        "inspect": False,
        "pretrain": {"max_seq_length": 32, "per_device_train_batch_size": 8, "save_strategy": "steps",
                     "save_steps": 4, "disable_tqdm": True},
        "budgets": {"dapt": {"max_steps": 12}},
        "finetune": {"seeds": 1, "num_train_epochs": 1, "max_seq_length": 32, "disable_tqdm": True},
        "arms": ["baseline", "dapt"],
    }  # fmt: skip
    path = tmp_path / "x.yaml"
    path.write_text(yaml.safe_dump(config))
    straight, killed = str(tmp_path / "straight"), str(tmp_path / "killed")
    assert main(["run", str(path), "--output_dir", straight]) == 0
    killed_while_saving(["run", str(path), "--output_dir", killed], tmp_path / "marker")
    assert main(["run", str(path), "--output_dir", killed]) == 0
    stage = load_experiment(str(path), killed).arms[1].chain[0]
    ours, theirs = weights(stage.directory(killed)), weights(stage.directory(straight))
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs)


HOLD = """
import sys, time
from dontstop.outputs import owned
with owned(sys.argv[1]):
    open(sys.argv[2], "w").close()
    time.sleep(600)
"""


def test_one_owner_per_output_directory(inputs, tmp_path, capsys, caplog):
    out, marker = tmp_path / "out", tmp_path / "held"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(out), str(marker)])
    try:
        while not marker.exists():
            assert holder.poll() is None
            time.sleep(0.1)
        assert main(pretrain(inputs, str(out), "--max_steps", "2")) == 2
        assert f"is in use by process {holder.pid}" in capsys.readouterr().err
        assert not out.exists()
    finally:
        holder.kill()
        holder.wait()
    # The holder died without letting go: its lock is taken over, with a note.
    with caplog.at_level("WARNING"):
        assert main(pretrain(inputs, str(out), "--max_steps", "2")) == 0
    assert f"taking over the lock of process {holder.pid}" in caplog.text


def test_label_type_str_reads_numbers_and_strings_as_one_kind(tmp_path):
    from dontstop.errors import UsageError
    from dontstop.tasks import read_task_file

    path = write_bytes(tmp_path / "mixed.jsonl", MIXED_LABELS)
    with pytest.raises(UsageError, match="mixes numbers and strings"):
        read_task_file(path, "auto")
    split = read_task_file(path, "auto", label_type="str")
    assert split.labels == ["1", "1", "2"]  # 1 and "1" are one class, as strings


def test_a_json_array_corpus_trains_like_json_lines(inputs, tmp_path):
    documents = synthetic_documents(60)
    array = tmp_path / "corpus.json"
    array.write_text(json.dumps([{"text": d} for d in documents]))
    lines, whole = tmp_path / "lines", tmp_path / "array"
    assert main(pretrain(inputs, str(lines), "--max_steps", "2")) == 0
    assert main(pretrain(inputs, str(whole), "--max_steps", "2", corpus=str(array))) == 0
    ours, theirs = weights(whole), weights(lines)
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs)


def test_model_paths_in_an_experiment_are_relative_to_its_yaml(tiny_bert, tmp_path, monkeypatch):
    import shutil

    from dontstop.experiment import load_experiment

    shutil.copytree(tiny_bert, tmp_path / "models" / "tiny")
    data = tmp_path / "data"
    data.mkdir()
    write_jsonl(data / "domain.jsonl", synthetic_documents(40, seed=1))
    write_rows(data / "train.jsonl", separable_task(24, 0))
    write_rows(data / "dev.jsonl", separable_task(8, 1))
    config = {"model": "models/tiny", "corpora": {"domain": "data/domain.jsonl"}, "arms": ["baseline"],
              "held_out": {"documents": 4},
              "task": {"train": "data/train.jsonl", "dev": "data/dev.jsonl"}}  # fmt: skip
    (tmp_path / "x.yaml").write_text(yaml.safe_dump(config))
    monkeypatch.chdir("/")
    plan = load_experiment(str(tmp_path / "x.yaml"), str(tmp_path / "out"))
    assert plan.base_eval.options["model_name_or_path"] == str(tmp_path / "models" / "tiny")


def test_vocab_extend_adds_a_word_the_tokenizer_only_knows_as_unknown(tiny_bert, tmp_path):
    from transformers import AutoTokenizer

    words = tmp_path / "words.txt"
    words.write_text("ß\n")  # not in the tiny vocabulary, not even as characters: it tokenizes to [UNK]
    assert AutoTokenizer.from_pretrained(tiny_bert).tokenize("ß") == ["[UNK]"]
    out = tmp_path / "extended"
    argv = ["vocab", "extend", "--model_name_or_path", tiny_bert, "--words", str(words), "--output_dir", str(out)]
    assert main(argv) == 0
    assert AutoTokenizer.from_pretrained(out).tokenize("ß") == ["ß"]
