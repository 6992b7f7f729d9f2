"""Word-level augmentation: the operations (whole words, Chinese words included), their parser, and `dontstop augment`
(copies with provenance, labels kept, reproducible, bad input refused)."""

from __future__ import annotations

import itertools
import json

import pytest
from helpers import write_rows

from dontstop.augment.ops import Augmenter, generator, parse_augmentation
from dontstop.cli import main
from dontstop.errors import UsageError

ENGLISH = "The kernel module loads a driver, then the daemon reads its config file."
CHINESE = "这家酒店服务态度很好，我们在北京大学学习自然语言处理。"


def augmenter(spec: str) -> Augmenter:
    return Augmenter(parse_augmentation(spec, "--test"))


@pytest.mark.parametrize("text", [ENGLISH, CHINESE])
def test_deletion_removes_whole_words_chinese_ones_included(text):
    delete = augmenter("delete:0.3")
    words = [word for _, word in delete.pieces(text)]
    if text is CHINESE:
        assert "北京大学" in words and "酒店" in words  # jieba's words, not characters
    # Every output is the text with some whole words removed: a subsequence of its words, rebuilt.
    subsequences = {
        "".join(gap + word for gap, word in kept).strip()
        for n in range(1, len(words) + 1)
        for kept in itertools.combinations(delete.pieces(text), n)
    }
    outputs = [delete(text, generator(1, i)) for i in range(30)]
    assert all(out in subsequences for out, _ in outputs)
    assert any(counts["delete"] > 0 for _, counts in outputs) and len({out for out, _ in outputs}) > 5
    assert delete(text, generator(1, 3)) == delete(text, generator(1, 3))  # a pure function of the seed


def test_swap_keeps_the_words_and_cutoff_removes_one_span():
    swap, cut = augmenter("swap:0.2"), augmenter("cutoff:0.3")
    swapped = [swap(CHINESE, generator(2, i))[0] for i in range(10)]
    assert all(sorted(s) == sorted(CHINESE) for s in swapped)  # the same characters, moved about
    assert sum(s != CHINESE for s in swapped) >= 8
    for i in range(10):
        pieces = cut.pieces(ENGLISH)
        out, counts = cut(ENGLISH, generator(2, i))
        n = counts["cutoff"]
        assert n == int(0.3 * len(pieces))
        assert any(
            out == "".join(g + w for g, w in pieces[:start] + pieces[start + n :]).strip()
            for start in range(len(pieces) - n + 1)
        )
    assert augmenter("dropout")(ENGLISH, generator(0)) == (ENGLISH, {})
    assert augmenter("delete:0.9")("word", generator(0))[0] == "word"  # never an empty text


@pytest.mark.parametrize(
    "spec, error",
    [
        ("shuffle:0.1", "unknown augmentation 'shuffle'"),
        ("delete", "delete needs a rate"),
        ("delete:1.2", "the rate of delete must be in (0, 1)"),
        ("dropout:0.1", "dropout takes no rate"),
    ],
)
def test_bad_augmentations_name_the_option(spec, error):
    with pytest.raises(UsageError, match=rf"^--opt {spec}: .*{error.replace('(', '.').replace(')', '.')}"):
        parse_augmentation(spec, "--opt")
    assert str(parse_augmentation("delete:0.15,swap:0.1", "--opt")) == "delete:0.15,swap:0.1"


def test_augment_writes_copies_with_provenance_and_labels(tmp_path):
    rows = [{"text": ENGLISH, "label": "a", "id": 1}, {"text": CHINESE, "label": "b", "id": 2}]
    source = write_rows(tmp_path / "train.jsonl", rows)
    outputs = []
    for name in ("a", "b"):
        argv = ["augment", "--train_file", source, "--delete", "0.2", "--swap", "0.1", "--copies", "3"]
        assert main([*argv, "--output_dir", str(tmp_path / name)]) == 0
        outputs.append((tmp_path / name / "augmented.jsonl").read_text(encoding="utf-8"))
    assert outputs[0] == outputs[1]  # reproducible
    written = [json.loads(line) for line in outputs[0].splitlines()]
    assert len(written) == 2 * 4
    assert [(r["aug_source_line"], r["aug_copy"]) for r in written] == [(1, c) for c in range(4)] + [
        (2, c) for c in range(4)
    ]
    assert written[0]["text"] == ENGLISH and written[0]["aug_operations"] == ""
    assert all(r["label"] == rows[r["aug_source_line"] - 1]["label"] and "id" in r for r in written)
    assert all(r["aug_operations"].startswith("delete=") for r in written if r["aug_copy"])
    report = json.loads((tmp_path / "a" / "augment.json").read_text())
    assert report["records_written"] == 8 and report["augmentation"] == "delete:0.2,swap:0.1"
    assert report["input_file"]["records"] == 2 and report["words_changed"]["swap"] >= 6

    # A plain-text file, one text per line; originals left out.
    lines = tmp_path / "texts.txt"
    lines.write_text(f"{ENGLISH}\n\n{CHINESE}\n", encoding="utf-8")
    argv = ["augment", "--train_file", str(lines), "--cutoff", "0.3", "--no_include_original"]
    assert main([*argv, "--output_dir", str(tmp_path / "c")]) == 0
    written = [json.loads(line) for line in (tmp_path / "c" / "augmented.jsonl").read_text().splitlines()]
    assert [r["aug_source_line"] for r in written] == [1, 3] and all(r["aug_copy"] == 1 for r in written)


@pytest.mark.parametrize(
    "extra, error",
    [
        ([], "nothing to do: give --delete, --swap or --cutoff"),
        (["--delete", "1.0"], "--delete 1.0: must be in [0, 1)"),
        (["--delete", "0.1", "--text_column", "body"], "train.jsonl:1: no text in column 'body'"),
        (["--delete", "0.1", "--copies", "0"], "--copies 0: must be in [1, inf)"),
    ],
)
def test_bad_augment_input_is_one_line_exit_2_nothing_written(extra, error, tmp_path, capsys):
    source = write_rows(tmp_path / "train.jsonl", [{"text": ENGLISH, "label": "a"}])
    out = tmp_path / "out"
    assert main(["augment", "--train_file", source, "--output_dir", str(out), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert error in err and len(err.splitlines()) == 1, err
    assert not out.exists()
    assert main(["augment", "--train_file", str(tmp_path / "none.jsonl"), "--delete", "0.1", "--output_dir",
                 str(out)]) == 2  # fmt: skip
    assert "none.jsonl: no such file" in capsys.readouterr().err and not out.exists()
