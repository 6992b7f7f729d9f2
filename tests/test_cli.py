"""The command line: help for every stage, YAML configs with overrides, and one clear line for bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import pretrain_args, write_jsonl

from dontstop.cli import STAGES, main


def test_top_level_help_lists_every_stage(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert all(stage in out for stage in STAGES)


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_every_stage_has_help_with_an_example(stage, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([stage, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert f"dontstop {stage}" in out and "example" in out


def test_console_script_runs_as_a_module():
    result = subprocess.run([sys.executable, "-m", "dontstop", "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "pretrain" in result.stdout


def test_unknown_stage_is_an_error(capsys):
    assert main(["pretrian"]) == 2
    assert "unknown stage 'pretrian'" in capsys.readouterr().err


def test_yaml_config_with_command_line_overrides(tiny_bert, corpus, tmp_path):
    from dontstop.config import make_parser, parse_with_config

    config = tmp_path / "run.yaml"
    config.write_text(
        f"model_name_or_path: {tiny_bert}\ntrain_file: [{corpus}]\noutput_dir: {tmp_path / 'o'}\n"
        "learning_rate: 3.0e-4\nmax_steps: 7\nmlm_probability: 0.2\n"
    )
    model_args, data_args, masking_args, training_args = parse_with_config(
        make_parser("pretrain"), ["--config", str(config), "--max_steps", "9"]
    )
    assert model_args.model_name_or_path == tiny_bert
    assert data_args.train_file == [corpus]
    assert masking_args.mlm_probability == 0.2
    assert training_args.learning_rate == 3e-4
    assert training_args.max_steps == 9  # the command line wins


def test_train_file_repeats_and_lists(tiny_bert, corpus, tmp_path):
    from dontstop.config import make_parser, parse_with_config

    other = write_jsonl(tmp_path / "b.jsonl", ["x y z"])
    _, data_args, _, _ = parse_with_config(make_parser("pretrain"), ["--train_file", corpus, "--train_file", other])
    assert data_args.train_file == [corpus, other]
    _, data_args, _, _ = parse_with_config(make_parser("pretrain"), ["--train_file", corpus, other])
    assert data_args.train_file == [corpus, other]


def test_two_train_files_are_both_used(tiny_bert, corpus, tmp_path):
    other = write_jsonl(tmp_path / "b.jsonl", ["the daemon reads its config file"] * 30)
    out = str(tmp_path / "out")
    assert main(["pretrain", *pretrain_args(tiny_bert, corpus, out, "--train_file", other, "--max_steps", "2")]) == 0
    with open(os.path.join(out, "README.md")) as f:
        card = f.read()
    assert corpus in card and other in card


def write_bytes(path, data: bytes) -> str:
    with open(path, "wb") as f:
        f.write(data)
    return str(path)


BAD_INPUTS = {
    "missing file": (lambda d: str(d / "nope.jsonl"), "no such file"),
    "empty file": (lambda d: write_bytes(d / "empty.jsonl", b""), "empty"),
    "blank lines only": (lambda d: write_bytes(d / "blank.txt", b"\n  \n"), "no documents"),
    "unknown text column": (lambda d: write_jsonl(d / "c.jsonl", ["a b"], column="body"), "no text column 'text'"),
    "invalid utf-8": (
        lambda d: write_bytes(d / "bad.txt", b"fine line\nbad \xff\xfe line\n"),
        "bad.txt:2: invalid UTF-8",
    ),
    "malformed json": (
        lambda d: write_bytes(d / "bad.jsonl", b'{"text": "ok"}\n{"text": "oops\n'),
        "bad.jsonl:2: malformed JSON",
    ),
    "non-text value": (lambda d: write_bytes(d / "num.jsonl", b'{"text": 5}\n'), "num.jsonl:1: 'text' is int"),
    "unknown format": (lambda d: write_bytes(d / "c.xml", b"<a/>"), "unknown corpus format"),
    "csv without the column": (lambda d: write_bytes(d / "c.csv", b"body,label\nx,1\n"), "c.csv:1: no text column"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_corpus_is_one_line_exit_2_nothing_written(case, tiny_bert, tmp_path, capsys):
    make, message = BAD_INPUTS[case]
    out = tmp_path / "out"
    code = main(["pretrain", *pretrain_args(tiny_bert, make(tmp_path), str(out))])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert message in err
    assert len(err.splitlines()) == 1, err
    assert not out.exists()


def test_bad_eval_file_spec(tiny_bert, corpus, tmp_path, capsys):
    assert main(["pretrain", *pretrain_args(tiny_bert, corpus, str(tmp_path / "o"), "--eval_file", "general")]) == 2
    assert "NAME=PATH" in capsys.readouterr().err


def test_model_that_does_not_exist(corpus, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["pretrain", *pretrain_args(str(tmp_path / "no-such-model"), corpus, str(out))])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "cannot load model" in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_mlm_needs_a_mask_token(tiny_gpt2, corpus, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["pretrain", *pretrain_args(tiny_gpt2, corpus, str(out), "--objective", "mlm")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "no mask token" in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_bad_yaml_names_the_file_and_line(tmp_path, capsys):
    config = tmp_path / "bad.yaml"
    config.write_text("max_steps: 5\nlearning_rate: [unclosed\n")
    assert main(["pretrain", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "bad.yaml:" in err and "invalid YAML" in err


def test_unknown_yaml_key(tmp_path, capsys):
    config = tmp_path / "typo.yaml"
    config.write_text("max_step: 5\n")
    assert main(["pretrain", "--config", str(config)]) == 2
    assert "unknown option(s) max_step" in capsys.readouterr().err


def test_resume_last_without_checkpoint(tiny_bert, corpus, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["pretrain", *pretrain_args(tiny_bert, corpus, str(out), "--resume_from_checkpoint", "last")]) == 2
    assert "no checkpoint-*" in capsys.readouterr().err


def test_other_corpus_formats(tiny_bert, tmp_path):
    import datasets

    texts = ["the kernel module loads a driver", "python script prints output to stdout"] * 20
    txt = tmp_path / "c.txt"
    txt.write_text("\n".join(texts) + "\n\n")
    csv = tmp_path / "c.csv"
    csv.write_text("body,label\n" + "\n".join(f'"{t}",1' for t in texts) + "\n")
    datasets.Dataset.from_dict({"text": texts}).to_parquet(str(tmp_path / "c.parquet"))
    datasets.Dataset.from_dict({"text": texts}).save_to_disk(str(tmp_path / "saved"))
    for path, extra in [
        (txt, []),
        (csv, ["--text_column", "body"]),
        (tmp_path / "c.parquet", []),
        (tmp_path / "saved", []),
    ]:
        out = tmp_path / f"out-{os.path.basename(path)}"
        assert main(["pretrain", *pretrain_args(tiny_bert, str(path), str(out), "--max_steps", "1", *extra)]) == 0
        with open(out / "metrics.json") as f:
            metrics = json.load(f)
        assert metrics["train"]["train_runtime"] > 0
