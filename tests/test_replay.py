"""Replay (`--replay_file`, `--replay_ratio`): the share of general tokens per epoch and per window, fresh general
examples each epoch, cycling of a small general corpus, masks and resume, bad input, and an end-to-end run."""

from __future__ import annotations

import os
from collections import Counter

import numpy as np
import pytest
import torch
from conftest import pretrain_args, synthetic_documents, write_jsonl
from helpers import StopAt, parse, weights
from helpers import pretrain_cli as run
from transformers import AutoTokenizer

from dontstop.cli import main
from dontstop.masking import EpochIndexed, EpochSampler, MaskedLMCollator
from dontstop.pretrain import run_pretrain
from dontstop.replay import ReplayMix
from dontstop.tokenization import Framing, LineByLine, PackedBlocks, TokenizedCorpus

BLOCK = 32


@pytest.fixture(scope="module")
def tokenizer(tiny_bert):
    return AutoTokenizer.from_pretrained(tiny_bert)


def blocks(tokenizer, documents, kind=PackedBlocks):
    return kind(TokenizedCorpus.from_texts(tokenizer, documents), Framing.from_tokenizer(tokenizer), BLOCK)


def general_share(mix, order):
    lengths = mix.lengths(0)
    general = order >= mix.n_domain
    return lengths[order[general]].sum() / lengths[order].sum()


@pytest.mark.parametrize("ratio", [0.1, 0.3, 0.5])
def test_packed_share_is_the_ratio_within_one_block_per_epoch_and_even_in_every_window(tokenizer, ratio):
    domain = blocks(tokenizer, synthetic_documents(300))
    general = blocks(tokenizer, synthetic_documents(1000, seed=5))
    mix = ReplayMix(domain, general, ratio, seed=7)
    sampler = mix.sampler(seed=1, batch_size=8, by_length=False)
    for epoch in (0, 1):
        order = sampler.order(epoch)
        assert sorted(order.tolist()) == list(range(len(mix)))  # every domain example and slot once
        domain_tokens, general_tokens = mix.epoch_tokens(epoch)
        assert abs(general_tokens - ratio * (domain_tokens + general_tokens)) <= BLOCK
        is_general = order >= mix.n_domain
        expected = 10 * mix.n_slots / len(mix)
        for start in range(len(order) - 10):  # every window of 10 consecutive blocks, not just the epoch
            count = int(is_general[start : start + 10].sum())
            assert np.floor(expected) <= count <= np.ceil(expected), (epoch, start, count)
        # the first half of the epoch (a run stopped by --max_steps) is mixed as the whole is
        assert abs(general_share(mix, order[: len(order) // 2]) - ratio) < 0.02


def test_epochs_draw_different_general_blocks_when_the_general_corpus_is_larger(tokenizer):
    domain = blocks(tokenizer, synthetic_documents(100))
    general = blocks(tokenizer, synthetic_documents(1000, seed=5))
    mix = ReplayMix(domain, general, 0.2, seed=7)
    assert not mix.cycled and 3 * mix.n_slots <= len(general)
    drawn = [set(mix.general_indices(epoch).tolist()) for epoch in range(3)]
    assert all(len(d) == mix.n_slots for d in drawn)  # no repeat within an epoch
    assert not drawn[0] & drawn[1] and not drawn[1] & drawn[2] and not drawn[0] & drawn[2]
    epoch1_slot = next(k for k in range(len(mix)) if k >= mix.n_domain)
    item0, item1 = mix[epoch1_slot], mix[len(mix) + epoch1_slot]
    assert (item0["idx"], item0["epoch"], item1["idx"], item1["epoch"]) == (epoch1_slot, 0, epoch1_slot, 1)
    assert not np.array_equal(item0["input_ids"], item1["input_ids"])
    # a pure function of (seed, epoch, slot): a fresh copy (a dataloader worker, a resumed run) agrees
    again = ReplayMix(domain, general, 0.2, seed=7)
    assert np.array_equal(again.general_indices(2), mix.general_indices(2))
    assert not np.array_equal(ReplayMix(domain, general, 0.2, seed=8).general_indices(0), mix.general_indices(0))


def test_small_general_corpus_is_cycled_with_fresh_masks(tokenizer, tiny_bert, caplog):
    domain = blocks(tokenizer, synthetic_documents(300))
    general = blocks(tokenizer, synthetic_documents(12, seed=5))
    mix = ReplayMix(domain, general, 0.5, seed=7)
    assert mix.cycled and mix.n_slots > 3 * len(general)
    with caplog.at_level("WARNING"):
        mix.log_plan("small.jsonl")
    assert "cycled" in caplog.text
    uses = Counter(mix.general_indices(0).tolist())
    assert set(uses) == set(range(len(general)))  # the whole general corpus, evenly
    assert max(uses.values()) - min(uses.values()) <= 2
    domain_tokens, general_tokens = mix.epoch_tokens(0)
    assert general_tokens / (domain_tokens + general_tokens) == pytest.approx(0.5, abs=0.02)

    slots = [mix.n_domain + j for j, g in enumerate(mix.general_indices(0)) if g == mix.general_indices(0)[0]][:2]
    first, second = mix[slots[0]], mix[slots[1]]
    assert np.array_equal(first["input_ids"], second["input_ids"])  # the same general block twice ...
    collator = MaskedLMCollator.from_tokenizer(tokenizer, len(tokenizer), seed=7)
    masked = collator([first, second])["input_ids"]
    assert not torch.equal(masked[0], masked[1])  # ... with different masks


def test_domain_examples_keep_their_masks(tokenizer):
    domain = blocks(tokenizer, synthetic_documents(100))
    plain, mix = EpochIndexed(domain), ReplayMix(domain, blocks(tokenizer, synthetic_documents(50, seed=5)), 0.3, 7)
    collator = MaskedLMCollator.from_tokenizer(tokenizer, len(tokenizer), seed=7)
    for epoch in (0, 3):
        ours = collator([mix[epoch * len(mix) + i] for i in range(5)])
        today = collator([plain[epoch * len(plain) + i] for i in range(5)])
        assert torch.equal(ours["input_ids"], today["input_ids"]) and torch.equal(ours["labels"], today["labels"])


def test_line_by_line_balances_tokens_and_keeps_batches_grouped_by_length(tokenizer):
    rng = np.random.default_rng(0)
    short = [" ".join(synthetic_documents(1, seed=s)[0].split()[: rng.integers(3, 12)]) for s in range(600)]
    long = synthetic_documents(1500, seed=9)  # general documents are longer: counting examples would be wrong
    domain, general = blocks(tokenizer, short, LineByLine), blocks(tokenizer, long, LineByLine)
    mix = ReplayMix(domain, general, 0.3, seed=7)
    shares = []
    for epoch in range(4):
        domain_tokens, general_tokens = mix.epoch_tokens(epoch)
        shares.append(general_tokens / (domain_tokens + general_tokens))
    assert all(abs(s - 0.3) < 0.03 for s in shares), shares  # by tokens, not by examples
    assert mix.n_slots / len(mix) < 0.2

    batch = 8
    sampler = mix.sampler(seed=1, batch_size=batch, by_length=True)
    order = sampler.order(1)
    assert sorted(order.tolist()) == list(range(len(mix)))
    lengths = mix.lengths(1)
    spread = [np.ptp(lengths[order[i : i + batch]]) for i in range(0, len(order) - batch + 1, batch)]
    ungrouped = EpochSampler(len(mix), 1).order(1)
    baseline = [np.ptp(lengths[ungrouped[i : i + batch]]) for i in range(0, len(order) - batch + 1, batch)]
    assert np.mean(spread) < 0.5 * np.mean(baseline)  # batches still hold similar lengths
    window = batch * 50
    for start in range(0, len(order) - window + 1, window):  # and every window of 50 batches keeps its share
        assert abs(general_share(mix, order[start : start + window]) - 0.3) < 0.05


@pytest.fixture
def general(tmp_path):
    return write_jsonl(tmp_path / "general.jsonl", synthetic_documents(200, seed=3))


def test_zero_ratio_is_todays_run(tiny_bert, corpus, tmp_path):
    common = ["--max_steps", "4", "--validation_split_percentage", "0"]
    today, zero = str(tmp_path / "today"), str(tmp_path / "zero")
    run(*pretrain_args(tiny_bert, corpus, today, *common))
    metrics = run(*pretrain_args(tiny_bert, corpus, zero, *common, "--replay_ratio", "0"))
    assert "replay" not in metrics
    a, b = weights(today), weights(zero)
    assert all(torch.equal(a[name], b[name]) for name in a)


def test_end_to_end_tracks_the_general_loss_and_records_the_share(tiny_bert, corpus, general, tmp_path):
    out = str(tmp_path / "out")
    metrics = run(
        *pretrain_args(tiny_bert, corpus, out, "--max_steps", "30", "--replay_file", general, "--replay_ratio", "0.3")
    )
    for when in ("before", "after"):
        assert "eval_general_loss" in metrics[when] and "eval_validation_loss" in metrics[when]
    assert metrics["after"]["eval_general_loss"] < metrics["before"]["eval_general_loss"]
    replay = metrics["replay"]
    assert replay["file"] == general and replay["ratio"] == 0.3
    assert replay["general_tokens"] > 0 and replay["domain_tokens"] > 0
    assert replay["realised_share"] == pytest.approx(0.3, abs=0.03)
    assert replay["realised_share"] == pytest.approx(
        replay["general_tokens"] / (replay["general_tokens"] + replay["domain_tokens"]), abs=1e-5
    )
    # 30 steps of 8 examples, inside the first epoch: the general slots among the first 240 examples of its order
    assert (
        replay["epochs_trained"] == pytest.approx(metrics["train"]["epoch"], abs=1e-4)
        and metrics["train"]["epoch"] < 1
    )
    per_epoch = replay["general_examples_per_epoch"] + replay["domain_examples_per_epoch"]
    assert abs(replay["general_examples_drawn"] - 240 * replay["general_examples_per_epoch"] / per_epoch) <= 1
    with open(os.path.join(out, "README.md")) as f:
        card = f.read()
    assert "| replay (0.3 of tokens) |" in card and "| eval: general |" in card


def test_line_by_line_run_with_replay(tiny_bert, corpus, general, tmp_path):
    out = str(tmp_path / "out")
    args = ["--max_steps", "6", "--line_by_line", "--replay_file", general, "--replay_ratio", "0.3"]
    metrics = run(*pretrain_args(tiny_bert, corpus, out, *args))
    assert "eval_general_loss" in metrics["after"]
    assert 0.15 < metrics["replay"]["realised_share"] < 0.45


def test_own_general_eval_set_replaces_the_held_out_part(tiny_bert, corpus, general, tmp_path):
    held_out = write_jsonl(tmp_path / "held.jsonl", synthetic_documents(20, seed=11))
    out = str(tmp_path / "out")
    args = [
        "--max_steps",
        "2",
        "--replay_file",
        general,
        "--replay_ratio",
        "0.1",
        "--eval_file",
        f"general={held_out}",
    ]
    run(*pretrain_args(tiny_bert, corpus, out, *args))
    with open(os.path.join(out, "README.md")) as f:
        card = f.read()
    assert f"| eval: general | `{held_out}` |" in card and "of the replay documents" not in card


def test_resume_continues_exactly_with_replay(tiny_bert, corpus, general, tmp_path):
    common = [
        "--num_train_epochs",
        "2",
        "--save_strategy",
        "steps",
        "--save_steps",
        "20",
        "--validation_split_percentage",
        "0",
        "--replay_file",
        general,
        "--replay_ratio",
        "0.3",
    ]
    straight = str(tmp_path / "straight")
    run_pretrain(*parse(pretrain_args(tiny_bert, corpus, straight, *common)))
    interrupted = str(tmp_path / "interrupted")
    argv = pretrain_args(tiny_bert, corpus, interrupted, *common)
    run_pretrain(*parse(argv), callbacks=[StopAt(40)])  # inside the second epoch (34 steps each)
    assert os.path.isdir(os.path.join(interrupted, "checkpoint-40"))
    run_pretrain(*parse(argv + ["--resume_from_checkpoint", "last"]))
    a, b = weights(straight), weights(interrupted)
    for name in a:
        assert torch.equal(a[name], b[name]), name


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--replay_ratio", "1"], "--replay_ratio 1.0: must be in [0, 1)"),
        (["--replay_ratio", "-0.1"], "--replay_ratio -0.1: must be in [0, 1)"),
        (["--replay_ratio", "0.2"], "--replay_ratio needs --replay_file"),
        (["--replay_file", "GENERAL"], "--replay_file needs --replay_ratio"),
        (["--replay_file", "missing.jsonl", "--replay_ratio", "0.2"], "missing.jsonl: no such file"),
        (["--replay_file", "GENERAL", "--replay_ratio", "0.2", "--replay_text_column", "body"], "no text column"),
        (
            ["--replay_file", "GENERAL", "--replay_ratio", "0.2", "--streaming", "--max_steps", "2"],
            "--replay_file does not work with --streaming",
        ),
    ],
)
def test_bad_input_is_one_line(tiny_bert, corpus, general, tmp_path, capsys, extra, message):
    out = tmp_path / "out"
    extra = [general if e == "GENERAL" else e for e in extra]
    assert main(["pretrain", *pretrain_args(tiny_bert, corpus, str(out), *extra)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err
    assert not out.exists()
