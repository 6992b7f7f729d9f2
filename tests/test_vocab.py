"""`dontstop vocab extend` on tiny models: what the new rows hold, how the new words tokenize, what loads, what is
skipped; and `dontstop pretrain --train_new_embeddings_only_steps`: what moves and what stays bit-identical."""

from __future__ import annotations

import json
import os

import pytest
import torch
from conftest import pretrain_args
from helpers import domain_corpus, extend, parse, with_random_head, write_words
from transformers import AutoModelForCausalLM, AutoModelForMaskedLM, AutoTokenizer, TrainerCallback

from dontstop.cli import main
from dontstop.vocab import VOCAB_FILE, read_words

HEADER = "word\tfreq\tcohesion\tleft_entropy\tright_entropy\tscore\tdomain_ratio\tin_base_dict"


@pytest.fixture(scope="module")
def bases(tmp_path_factory, tiny_bert, tiny_roberta):
    root = tmp_path_factory.mktemp("vocab-bases")
    return {
        "bert": with_random_head(tiny_bert, root / "bert"),
        "roberta": with_random_head(tiny_roberta, root / "roberta"),
        "untied bert": with_random_head(tiny_bert, root / "untied-bert", untie=True),
    }


@pytest.fixture(scope="module")
def extended(tmp_path_factory, bases):
    """{kind: directory} of the bases extended with ROWS."""
    root = tmp_path_factory.mktemp("vocab-extended")
    directories = {}
    for kind, base in bases.items():
        directories[kind] = str(root / kind.replace(" ", "-"))
        extend(base, directories[kind])
    return directories


def metadata(directory) -> dict:
    with open(os.path.join(directory, VOCAB_FILE), encoding="utf-8") as f:
        return json.load(f)


@pytest.mark.parametrize("kind", ["bert", "roberta", "untied bert"])
def test_new_rows_are_the_mean_of_their_old_pieces(kind, bases, extended):
    old = AutoModelForMaskedLM.from_pretrained(bases[kind])
    new = AutoModelForMaskedLM.from_pretrained(extended[kind])
    meta = metadata(extended[kind])
    tied = kind != "untied bert"
    assert (new.get_output_embeddings().weight is new.get_input_embeddings().weight) == tied
    tensors = {
        "input embeddings": (old.get_input_embeddings().weight, new.get_input_embeddings().weight),
        "output bias": (old.get_output_embeddings().bias, new.get_output_embeddings().bias),
    }
    if not tied:
        tensors["output embeddings"] = (old.get_output_embeddings().weight, new.get_output_embeddings().weight)
    assert len(meta["row_parameters"]) == len(tensors)
    rows = meta["old_embedding_rows"]
    assert (
        meta["new_embedding_rows"] == rows + len(meta["added"]) == len(AutoTokenizer.from_pretrained(extended[kind]))
    )
    for what, (before, after) in tensors.items():
        assert after.shape[0] == meta["new_embedding_rows"], what
        assert torch.equal(before, after[:rows]), f"{what}: old rows changed"
        for added in meta["added"]:
            expected = before[added["old_piece_ids"]].mean(0)
            torch.testing.assert_close(after[added["id"]], expected, rtol=0, atol=1e-6, msg=f"{what} {added['word']}")
    if not tied:  # each tensor averaged its own rows
        foobar = meta["added"][0]
        assert not torch.allclose(
            tensors["output embeddings"][1][foobar["id"]], tensors["input embeddings"][1][foobar["id"]]
        )
    if kind == "bert":  # transformers resizes the head's separate bias tensor too
        assert new.cls.predictions.bias.shape[0] == meta["new_embedding_rows"]
        assert new.cls.predictions.decoder.bias is new.cls.predictions.bias


@pytest.mark.parametrize("kind", ["bert", "roberta"])
def test_new_word_is_one_token_at_the_start_of_a_text_and_mid_sentence(kind, extended):
    tokenizer = AutoTokenizer.from_pretrained(extended[kind])  # what was saved, reloaded

    def ids(text):
        return tokenizer(text, add_special_tokens=False)["input_ids"]

    for word in ("foobar", "kernelspace"):
        new = tokenizer.convert_tokens_to_ids(word)
        assert new >= metadata(extended[kind])["old_vocab_size"]
        assert ids(f"{word} loads a driver")[0] == new
        mid = ids(f"the {word} loads a driver")
        assert mid.count(new) == 1
        # nothing else changed around it: no stray token for the space before it
        assert [i for i in mid if i != new] == ids("the loads a driver")
        assert new not in ids(f"the {word}s load")  # single_word: no match inside a longer word
    if kind == "bert":  # lower-casing tokenizer: the capitalised form finds the token too
        assert tokenizer.convert_tokens_to_ids("foobar") in ids("Foobar loads")
        assert tokenizer.decode(ids("the foobar loads")) == "the foobar loads"


def test_chinese_word_becomes_one_token_in_bert(extended):
    tokenizer = AutoTokenizer.from_pretrained(extended["bert"])
    new = tokenizer.convert_tokens_to_ids("北京大学")
    meta = metadata(extended["bert"])
    entry = next(a for a in meta["added"] if a["word"] == "北京大学")
    assert entry["id"] == new and entry["old_pieces"] == ["北", "京", "大", "学"]
    assert entry["single_word"] is False and entry["normalized"] is False
    assert tokenizer("北京大学", add_special_tokens=False)["input_ids"] == [new]
    tokens = tokenizer.tokenize("我们在北京大学学习自然语言处理")
    assert tokens == ["我", "们", "在", "北京大学", "学", "习", "自", "然", "语", "言", "处", "理"]


@pytest.mark.parametrize("kind", ["bert", "roberta", "gpt2"])
def test_saved_model_loads_with_plain_transformers_and_runs(kind, extended, tiny_gpt2, tmp_path):
    directory = extended[kind] if kind != "gpt2" else str(tmp_path / "gpt2")
    if kind == "gpt2":
        extend(tiny_gpt2, directory)
    auto = AutoModelForCausalLM if kind == "gpt2" else AutoModelForMaskedLM
    model = auto.from_pretrained(directory)
    tokenizer = AutoTokenizer.from_pretrained(directory)
    meta = metadata(directory)
    assert meta["objective"] == ("clm" if kind == "gpt2" else "mlm")
    assert len(tokenizer) == meta["new_vocab_size"] == model.config.vocab_size
    inputs = tokenizer(["the foobar loads kernelspace"], return_tensors="pt")
    assert tokenizer.convert_tokens_to_ids("foobar") in inputs["input_ids"][0].tolist()
    with torch.no_grad():
        logits = model(**inputs).logits
    assert logits.shape == (1, inputs["input_ids"].shape[1], meta["new_vocab_size"])
    assert torch.isfinite(logits).all()
    assert os.path.exists(os.path.join(directory, "model.safetensors"))
    with open(os.path.join(directory, "README.md"), encoding="utf-8") as f:
        readme = f.read()
    assert f"--model_name_or_path {directory} --train_new_embeddings_only_steps" in readme
    assert not [name for name in os.listdir(os.path.dirname(directory)) if ".tmp-" in name]


def test_single_tokens_duplicates_and_phrases_are_skipped_and_reported(extended):
    meta = metadata(extended["bert"])
    assert [a["word"] for a in meta["added"]] == ["foobar", "kernelspace", "北京大学"]
    reasons = {s["word"]: s["reason"] for s in meta["skipped"]}
    assert reasons == {
        "kernel": "already one token",
        "Foobar": "duplicate of line 2",
        "machine learning": "phrase (whitespace inside; --include_phrases)",
        "北": "already one token",
    }
    assert meta["new_token_ids"] == [a["id"] for a in meta["added"]]
    with open(os.path.join(extended["bert"], "README.md"), encoding="utf-8") as f:
        readme = f.read()
    assert "already one token: 2" in readme and "| foobar |" in readme
    # RoBERTa is case-sensitive: "Foobar" is a word of its own there
    assert "Foobar" in [a["word"] for a in metadata(extended["roberta"])["added"]]


def test_top_counts_usable_words_and_phrases_on_request(tiny_bert, tmp_path):
    meta = extend(tiny_bert, tmp_path / "top", "--top", "2")
    assert [a["word"] for a in meta["added"]] == ["foobar", "kernelspace"]
    assert [s["word"] for s in meta["skipped"]] == ["kernel"]  # the words after the second were never considered

    meta = extend(tiny_bert, tmp_path / "phrases", "--include_phrases")
    phrase = next(a for a in meta["added"] if a["word"] == "machine learning")
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "phrases")
    assert phrase["id"] in tokenizer("we like Machine Learning a lot", add_special_tokens=False)["input_ids"]


def test_pad_to_multiple_of(tiny_bert, tmp_path):
    meta = extend(tiny_bert, tmp_path / "padded", "--pad_to_multiple_of", "64")
    assert meta["new_vocab_size"] == meta["old_vocab_size"] + 3
    assert meta["new_embedding_rows"] % 64 == 0 and meta["new_embedding_rows"] > meta["new_vocab_size"]
    model = AutoModelForMaskedLM.from_pretrained(tmp_path / "padded")
    assert model.cls.predictions.bias.shape[0] == meta["new_embedding_rows"]


def test_word_files_tsv_plain_and_jieba(tmp_path):
    tsv = tmp_path / "w.tsv"
    tsv.write_text("score\tword\tfreq\n9\tfoobar\t\n\n8\t  kernelspace \t3\n", encoding="utf-8")
    assert read_words(str(tsv)) == [(2, "foobar"), (4, "kernelspace")]
    plain = tmp_path / "w.lst"
    plain.write_text("\ufefffoobar\n\nmachine learning 3\n", encoding="utf-8")
    assert read_words(str(plain)) == [(1, "foobar"), (3, "machine learning 3")]
    jieba = tmp_path / "user_dict.txt"
    jieba.write_text(
        "北京大学 3 n\n自然语言处理 5\n深度学习\nmachine learning 2 nz\ndeep learning\n", encoding="utf-8"
    )
    assert read_words(str(jieba)) == [
        (1, "北京大学"), (2, "自然语言处理"), (3, "深度学习"), (4, "machine learning"), (5, "deep learning")
    ]  # fmt: skip


def write_bytes(path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


BAD_WORDS = {
    "missing file": (lambda d: str(d / "nope.tsv"), "no such file"),
    "no word column": (lambda d: write_words(d / "w.tsv", header="term\tfreq", rows=["x\t1"]), "w.tsv:1: no 'word'"),
    "empty word": (lambda d: write_words(d / "w.tsv", rows=["foobar\t1", "\t3"]), "w.tsv:3: empty word"),
    "invalid utf-8": (lambda d: write_bytes(d / "w.txt", b"foobar\nbad \xff\n"), "w.txt:2: invalid UTF-8"),
    "no words": (lambda d: write_bytes(d / "w.txt", b"\n \n"), "w.txt: no words"),
}


@pytest.mark.parametrize("case", sorted(BAD_WORDS))
def test_bad_word_file_is_one_line_exit_2_nothing_written(case, tiny_bert, tmp_path, capsys):
    make, message = BAD_WORDS[case]
    out = tmp_path / "out"
    argv = ["vocab", "extend", "--model_name_or_path", tiny_bert, "--words", make(tmp_path), "--output_dir", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err
    assert not out.exists()


def test_bad_arguments(tiny_bert, tmp_path, capsys):
    words = write_words(tmp_path / "w.tsv")
    out = tmp_path / "out"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    base = ["vocab", "extend", "--model_name_or_path", tiny_bert, "--words", words, "--output_dir", str(out)]
    assert main(base) == 2
    assert "--overwrite_output_dir" in capsys.readouterr().err
    assert main([*base, "--top", "0"]) == 2
    assert "--top" in capsys.readouterr().err
    assert os.listdir(out) == ["precious.txt"]
    assert main(["vocab"]) == 2
    assert "missing sub-command (sub-commands: extend" in capsys.readouterr().err
    assert main(["vocab", "shrink"]) == 2
    assert "unknown sub-command 'shrink' (sub-commands: extend" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["vocab", "extend", "--help"])
    assert exit_info.value.code == 0 and "dontstop vocab extend" in capsys.readouterr().out


class Snapshot(TrainerCallback):
    """The model's parameters, and Adam's first moment of its input embeddings, at the end of the given step."""

    def __init__(self, step):
        self.step = step
        self.params = self.embedding_moments = None

    def on_step_end(self, args, state, control, model=None, optimizer=None, **kwargs):
        if state.global_step == self.step:
            self.params = {name: p.detach().clone() for name, p in model.named_parameters()}
            self.embedding_moments = optimizer.state[model.get_input_embeddings().weight]["exp_avg"].clone()


def test_pretrain_trains_the_new_rows_alone_first(extended, tmp_path):
    from dontstop.pretrain import run_pretrain

    directory = extended["bert"]
    meta = metadata(directory)
    new_ids = meta["new_token_ids"]
    rows = meta["row_parameters"]  # the embeddings (tied to the output) and the output bias
    start = dict(AutoModelForMaskedLM.from_pretrained(directory).named_parameters())
    out = str(tmp_path / "out")
    argv = pretrain_args(directory, domain_corpus(tmp_path / "domain.jsonl"), out, "--max_steps", "3")
    argv += ["--train_new_embeddings_only_steps", "2", "--validation_split_percentage", "0", "--warmup_steps", "0"]
    snapshot = Snapshot(2)
    metrics = run_pretrain(*parse(argv), callbacks=[snapshot])
    assert metrics["new_embeddings_only"]["steps"] == 2 and metrics["new_embeddings_only"]["new_tokens"] == 3

    # after the 2 steps of the first phase (weight decay 0.01 on): only the new rows moved, bit for bit
    phase1 = snapshot.params
    old = torch.ones(meta["new_embedding_rows"], dtype=torch.bool)
    old[new_ids] = False
    for name, tensor in start.items():
        if name in rows:
            assert torch.equal(phase1[name][old], tensor.detach()[old]), f"old rows of {name} moved"
            changed = phase1[name][~old] != tensor.detach()[~old]
            assert changed.view(len(new_ids), -1).any(1).all(), f"not every new row of {name} moved"
        else:
            assert torch.equal(phase1[name], tensor.detach()), f"{name} moved while only the new rows train"
    # the old rows' gradients were zeroed, not just their values restored: Adam holds no momentum for them
    assert not snapshot.embedding_moments[old].any() and snapshot.embedding_moments[~old].any()

    # the third step trains everything
    final = dict(AutoModelForMaskedLM.from_pretrained(out).named_parameters())
    embeddings = "bert.embeddings.word_embeddings.weight"
    assert not torch.equal(final[embeddings][old], start[embeddings].detach()[old])
    query = "bert.encoder.layer.0.attention.self.query.weight"
    assert not torch.equal(final[query], start[query].detach())
    with open(os.path.join(out, "dontstop_config.json")) as f:
        assert json.load(f)["model"]["train_new_embeddings_only_steps"] == 2


def test_new_rows_alone_with_a_head_warmup(tiny_bert_headless, tmp_path):
    from dontstop.pretrain import run_pretrain

    directory = str(tmp_path / "ext")
    meta = extend(tiny_bert_headless, directory)
    assert "cls.predictions.transform.dense.weight" in meta["untrained_parameters"]
    start = dict(AutoModelForMaskedLM.from_pretrained(directory).named_parameters())
    out = str(tmp_path / "out")
    argv = pretrain_args(directory, domain_corpus(tmp_path / "domain.jsonl"), out, "--max_steps", "2")
    argv += [
        "--train_new_embeddings_only_steps",
        "2",
        "--head_warmup_steps",
        "1",
        "--validation_split_percentage",
        "0",
    ]
    argv += ["--warmup_steps", "0"]  # the first step, the only one of the overlap, must not have a zero learning rate
    metrics = run_pretrain(*parse(argv))
    assert metrics["head_warmup"]["steps"] == 1
    final = dict(AutoModelForMaskedLM.from_pretrained(out).named_parameters())
    embeddings = "bert.embeddings.word_embeddings.weight"
    old = torch.ones(meta["new_embedding_rows"], dtype=torch.bool)
    old[meta["new_token_ids"]] = False
    assert torch.equal(final[embeddings][old], start[embeddings].detach()[old])
    assert not torch.equal(final[embeddings][~old], start[embeddings].detach()[~old])
    for name in ("cls.predictions.transform.dense.weight", "cls.predictions.bias"):
        assert not torch.equal(final[name], start[name].detach()), f"{name}: the fresh head did not train"
    for name, tensor in start.items():
        if name.startswith("bert.") and name != embeddings:
            assert torch.equal(final[name], tensor.detach()), f"{name} moved"


def test_new_rows_alone_needs_an_extended_model(tiny_bert, corpus, tmp_path, capsys):
    out = tmp_path / "out"
    argv = pretrain_args(tiny_bert, corpus, str(out), "--max_steps", "2", "--train_new_embeddings_only_steps", "2")
    assert main(["pretrain", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert "needs a model from `dontstop vocab extend`" in err and len(err.splitlines()) == 1
    assert not out.exists()
