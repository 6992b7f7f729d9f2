"""The fast path of the command line: `--help` and typing mistakes answered from the options snapshots, before torch
loads; the snapshots equal their live parsers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from dontstop import preflight

FAST = 5.0  # seconds: `--help` on CI's 2 shared cores (about 0.3 s idle; importing torch alone takes longer than 2)


@pytest.mark.parametrize("stage", preflight.snapshot_stages())
def test_each_snapshot_equals_its_live_parser(stage, monkeypatch):
    monkeypatch.setenv("COLUMNS", preflight.COLUMNS)
    with open(os.path.join(preflight.SNAPSHOTS, f"{stage}.json"), encoding="utf-8") as f:
        written = json.load(f)
    assert written == preflight.snapshot(stage), f"stale: run python -m dontstop.preflight to rewrite {stage}.json"


def dontstop(*argv: str) -> tuple[subprocess.CompletedProcess, float]:
    """`dontstop ARGV` in a fresh interpreter, which also says whether torch was imported."""
    code = "import sys\nfrom dontstop.cli import main\ntry:\n    rc = main(sys.argv[1:])\nexcept SystemExit as e:\n"
    code += "    rc = e.code\nprint('torch imported:', 'torch' in sys.modules, file=sys.stderr)\nsys.exit(rc)\n"
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=120)
    return done, time.perf_counter() - started


def test_help_is_the_live_parsers_and_comes_before_torch_loads():
    done, seconds = dontstop("pretrain", "--help")
    assert done.returncode == 0 and "torch imported: False" in done.stderr
    assert done.stdout == preflight.load("pretrain")["help"]
    assert "--head_warmup_learning_rate" in done.stdout and "--learning_rate" in done.stdout  # ours and inherited
    assert seconds < FAST, f"dontstop pretrain --help took {seconds:.1f} s"


@pytest.mark.parametrize(
    "argv, said",
    [
        (["pretrain", "--train_file", "no/such.jsonl"], "--train_file no/such.jsonl: no such file"),
        (["finetune", "--lerning_rate", "1e-4"], "unrecognized arguments: --lerning_rate (see dontstop finetune"),
        (["pretrain", "--mlm_probability", "1.5"], "--mlm_probability 1.5: must be in (0, 1]"),
        (["pretrain", "--max_steps", "ten"], "argument --max_steps: invalid int value: 'ten'"),
        (["pretrain", "--objective", "mlp"], "argument --objective: invalid choice: 'mlp'"),
        (["inspect", "--corpus", "a=missing.txt"], "--corpus missing.txt: no such file"),
        (["finetune", "--learning_rate", "fast"], "--learning_rate fast: expected a number or auto"),
    ],
)
def test_typing_mistakes_are_one_line_before_torch_loads(argv, said):
    done, _ = dontstop(*argv)
    assert done.returncode == 2, done.stderr
    error = [line for line in done.stderr.splitlines() if not line.startswith("torch imported")]
    assert len(error) == 1 and said in error[0], done.stderr
    assert "torch imported: False" in done.stderr


def test_another_transformers_version_means_the_live_parser(monkeypatch):
    import importlib.metadata

    monkeypatch.setattr(importlib.metadata, "version", lambda name: "0.0.1")
    assert preflight.load("pretrain") is None
    preflight.check("pretrain", ["--train_file", "no/such.jsonl"])  # nothing raised: the real parser decides


def test_a_prefix_is_an_option_as_argparse_takes_it():
    preflight.check("pretrain", ["--learning_rat", "1e-4"])  # unambiguous: --learning_rate
    with pytest.raises(Exception, match="unrecognized arguments: --head_warmup"):
        preflight.check("pretrain", ["--head_warmup", "10"])  # _steps or _learning_rate: ambiguous
