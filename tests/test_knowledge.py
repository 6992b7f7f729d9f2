"""Knowledge for the long tail: glossary and triples files, definitions appended behind their term's example and
visible only to it, the n-gram adapter, long-tail detection, and contrast mining that keeps only new words."""

from __future__ import annotations

import json
import os
import random

import pytest
import torch
from conftest import pretrain_args, synthetic_documents, write_jsonl
from helpers import finetune_args, run_cli, separable_task, weights, write_rows
from transformers import AutoModelForMaskedLM, AutoTokenizer

from dontstop.cli import main
from dontstop.knowledge.expand import Knowledge
from dontstop.knowledge.ngram_adapter import NgramAdapterArguments, load_ngram_adapter, new_ngram_adapter
from dontstop.knowledge.terms import TermMatcher, TextTerms
from dontstop.knowledge.visibility import KnowledgeAttention
from dontstop.masking import MaskedLMCollator

TEXT = "the kernel module loads a driver and the daemon reads its config file"
GLOSSARY = "kernel module\tcode that extends the kernel at run time\ndaemon\ta process that runs in the background\n"


def write(path, text: str) -> str:
    path.write_text(text, encoding="utf-8")
    return str(path)


@pytest.fixture
def glossary(tmp_path):
    return write(tmp_path / "glossary.tsv", GLOSSARY)


# --- files ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "option, content, message",
    [
        ("--glossary", "kernel\tthe core\ndaemon a process\n", ":2: no tab"),
        ("--glossary", "kernel\tthe core\ndaemon\t  \n", ":2: empty definition of 'daemon'"),
        ("--glossary", "\tthe core\n", ":1: empty term"),
        ("--triples", "kernel\tpart_of\toperating system\nkernel\tmonolithic\n", ":2: 2 column(s)"),
        ("--triples", "kernel\tpart_of\tos\textra\n", ":1: 4 column(s)"),
        ("--glossary", b"kernel\t\xff\n", ":1: invalid UTF-8"),
    ],
)
def test_a_bad_knowledge_file_is_one_line_naming_file_and_line(tmp_path, capsys, tiny_bert, option, content, message):
    path = tmp_path / "knowledge.tsv"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    corpus = write_jsonl(tmp_path / "c.jsonl", synthetic_documents(20))
    out = tmp_path / "out"
    assert main(["pretrain", *pretrain_args(tiny_bert, corpus, str(out), option, str(path))]) == 2
    err = capsys.readouterr().err.strip()
    assert f"{path}{message}" in err and len(err.splitlines()) == 1, err
    assert not out.exists()


def test_a_term_defined_twice_keeps_its_first_definition_with_a_warning(tmp_path, caplog):
    from dontstop.knowledge.sources import read_knowledge

    path = write(tmp_path / "g.tsv", "term\tdefinition\nkernel\tthe core\nkernel\tsomething else\nkernel\tthe core\n")
    facts = write(tmp_path / "t.tsv", "kernel\tpart_of\toperating system\nkernel\tpart_of\toperating system\n")
    assert read_knowledge(path, facts) == {"kernel": "the core ; part of operating system"}  # header skipped
    assert "g.tsv:3: 'kernel' is defined again differently (kept the first definition; 1 such line(s))" in caplog.text


# --- finding terms ----------------------------------------------------------------------------------------------


def test_terms_are_found_as_whole_words_longest_first(tiny_bert, tiny_roberta):
    for model in (tiny_bert, tiny_roberta):
        tokenizer = AutoTokenizer.from_pretrained(model)
        matcher = TermMatcher(tokenizer, ["kernel", "kernel module", "the"])
        ids = tokenizer("kernel module kernelx, the kernel.", add_special_tokens=True)["input_ids"]
        found = [(tokenizer.decode(ids[s:e]).strip(), term) for s, e, term in matcher.find(ids)]
        assert found == [("kernel module", 1), ("the", 2), ("kernel", 0)], (model, found)  # not inside "kernelx"
    text = "A kernel module, kernels and 北京大学 KERNEL"
    spans = TextTerms(["Kernel", "kernel module", "北京"]).spans(text)
    assert [text[s:e] for s, e in spans] == ["kernel module", "北京", "KERNEL"]  # not "kernel" inside "kernels"


# --- knowledge visible only to its term ---------------------------------------------------------------------------


def knowledge_batch(tokenizer, definitions: dict[str, str], vocab_size: int):
    knowledge = Knowledge(tokenizer, definitions, None, tokenizer.sep_token_id, 32)
    texts = [TEXT, "the network socket binds a port"]  # the second has no term: a row without knowledge
    features = [knowledge.apply({"input_ids": tokenizer(t)["input_ids"], "idx": i}, 64) for i, t in enumerate(texts)]
    return MaskedLMCollator.from_tokenizer(tokenizer, vocab_size, mlm_probability=0.3)(features), features


@pytest.mark.parametrize("padding_free", [False, True])
def test_an_appended_definition_changes_no_hidden_state_of_the_text(tiny_bert, padding_free):
    tokenizer = AutoTokenizer.from_pretrained(tiny_bert)
    torch.manual_seed(0)
    model = AutoModelForMaskedLM.from_pretrained(tiny_bert, attn_implementation="sdpa").eval()
    hidden = {}
    for name, definitions in {
        "a": {"kernel module": "code that extends the kernel", "daemon": "a process in the background"},
        "b": {"kernel module": "a different and much longer text about it here", "daemon": "x"},
    }.items():
        for both_ways in (False, True):
            batch, features = knowledge_batch(tokenizer, definitions, model.config.vocab_size)
            assert features[0]["text_length"] < len(features[0]["input_ids"]) and "knowledge_slot" not in features[1]
            if padding_free:
                from dontstop.masking.layout import segmented

                batch = segmented(batch, features, tokenizer.pad_token_id, pack=True)
            inputs = KnowledgeAttention.for_model(model, both_ways)({k: v for k, v in batch.items() if k != "labels"})
            assert inputs["attention_mask"].dim() == 4
            with torch.no_grad():
                states = model.base_model(**inputs)[0]
            text = ~batch["knowledge_appended"] & batch["attention_mask"].bool()
            hidden[name, both_ways] = states[text]
    assert torch.equal(hidden["a", False], hidden["b", False])  # one way: the text never sees the definitions
    assert not torch.allclose(hidden["a", True], hidden["b", True])  # both ways: through the term it does


def test_the_text_is_masked_as_without_knowledge_and_the_definition_too(tiny_bert, glossary):
    tokenizer = AutoTokenizer.from_pretrained(tiny_bert)
    batch, features = knowledge_batch(tokenizer, {"daemon": "a process that runs in the background"}, 200)
    plain = MaskedLMCollator.from_tokenizer(tokenizer, 200, mlm_probability=0.3)(
        [{"input_ids": tokenizer(t)["input_ids"], "idx": i} for i, t in enumerate([TEXT, "the network socket"])]
    )
    text = features[0]["text_length"]
    assert torch.equal(batch["labels"][0, :text], plain["labels"][0, :text])
    assert (batch["labels"][0, text:] != -100).any()  # the definition is masked and predicted too
    quiet = MaskedLMCollator.from_tokenizer(tokenizer, 200, mlm_probability=0.3, knowledge_loss=False)(features)
    assert (quiet["labels"][0, text:] == -100).all()


# --- pretraining and fine-tuning ----------------------------------------------------------------------------------


@pytest.mark.slow
def test_without_a_glossary_training_is_bit_identical(tmp_path, tiny_bert):
    corpus = write_jsonl(tmp_path / "c.jsonl", synthetic_documents(60))
    unused = write(tmp_path / "unused.tsv", "zebra crossing\ta place to cross a road\n")  # found nowhere
    common = ("--line_by_line", "--max_seq_length", "64", "--knowledge_tokens", "16", "--max_steps", "6")
    runs = {}
    for name, extra in {
        "plain": ["--max_seq_length", "64", "--line_by_line", "--max_steps", "6"],
        "unused": [*common, "--glossary", unused],
        "used": [*common, "--glossary", write(tmp_path / "g.tsv", GLOSSARY + "the\tan article\n")],
    }.items():
        assert main(["pretrain", *pretrain_args(tiny_bert, corpus, str(tmp_path / name), *extra)]) == 0
        runs[name] = weights(tmp_path / name)
    assert all(torch.equal(runs["plain"][k], runs["unused"][k]) for k in runs["plain"])
    assert not all(torch.equal(runs["plain"][k], runs["used"][k]) for k in runs["plain"])
    with open(tmp_path / "used" / "metrics.json") as f:
        knowledge = json.load(f)["knowledge"]
    assert knowledge["examples_with_terms"] > 0 and knowledge["terms_expanded"] >= knowledge["examples_with_terms"]
    assert "was appended to the training examples" in (tmp_path / "used" / "README.md").read_text()


@pytest.mark.slow
def test_finetune_attaches_definitions_at_training_and_prediction(tmp_path, tiny_bert, glossary):
    files = {s: write_rows(tmp_path / f"{s}.jsonl", separable_task(24, i)) for i, s in enumerate(["train", "dev"])}
    definitions = write(tmp_path / "g.tsv", "kernel\tthe core of an operating system\nnetwork\tlinked computers\n")
    out = tmp_path / "ft"
    assert run_cli(*finetune_args(tiny_bert, files, out, "--seeds", "1", "--glossary", definitions)) == 0
    with open(out / "results.json") as f:
        knowledge = json.load(f)["knowledge"]
    assert knowledge["train"]["examples_with_terms"] > 0 and knowledge["dev"]["examples_with_terms"] > 0
    token = write_rows(tmp_path / "tok.jsonl", [{"text": ["the", "kernel"], "label": ["O", "B-X"]}] * 4)
    assert run_cli(*finetune_args(tiny_bert, {"train": token, "dev": token}, tmp_path / "t", "--glossary",
                                  definitions)) == 2  # fmt: skip


# --- the n-gram adapter -------------------------------------------------------------------------------------------


def test_the_ngram_adapter_with_zeroed_weights_leaves_the_outputs_unchanged(tmp_path, tiny_bert):
    tokenizer = AutoTokenizer.from_pretrained(tiny_bert)
    model = AutoModelForMaskedLM.from_pretrained(tiny_bert).eval()
    inputs = tokenizer([TEXT, "the kernel module loads"], padding=True, return_tensors="pt")
    with torch.no_grad():
        before = model(**inputs).logits
    ngrams = write(tmp_path / "words.tsv", "word\tfreq\nkernel module\t9\nconfig file\t5\nkernel\t4\n")
    adapter = new_ngram_adapter(model, tokenizer, NgramAdapterArguments(ngram_adapter=True, ngrams=ngrams))
    assert adapter.words == ["kernel module", "config file"]  # a single piece needs no n-gram embedding
    rows, starts, lengths, which = adapter.find(inputs["input_ids"])
    found = sorted((r, tokenizer.decode(inputs["input_ids"][r, s : s + n])) for r, s, n in
                   zip(rows.tolist(), starts.tolist(), lengths.tolist(), strict=True))  # fmt: skip
    assert found == [(0, "config file"), (0, "kernel module"), (1, "kernel module")]
    with torch.no_grad():
        assert torch.equal(model(**inputs).logits, before)  # a fresh adapter: its projections start at zero
        for parameter in adapter.parameters():
            parameter.normal_()
        assert not torch.allclose(model(**inputs).logits, before)
        for parameter in adapter.parameters():
            parameter.zero_()
        assert torch.equal(model(**inputs).logits, before)


@pytest.mark.slow
def test_the_ngram_adapter_trains_is_saved_beside_the_model_and_loads_in_finetune(tmp_path, tiny_bert):
    corpus = write_jsonl(tmp_path / "c.jsonl", synthetic_documents(80))
    ngrams = write(tmp_path / "ngrams.txt", "kernel module\nconfig file\nnetwork socket\n")
    out = tmp_path / "pt"
    extra = ("--ngram_adapter", "--ngrams", ngrams, "--ngram_freeze_model", "--max_steps", "8")
    assert main(["pretrain", *pretrain_args(tiny_bert, corpus, str(out), *extra)]) == 0
    saved = sorted(f for f in os.listdir(out) if f.startswith("ngram"))
    assert saved == ["ngram_adapter.json", "ngram_adapter.safetensors"]
    assert not any(k.startswith("ngram_adapter") for k in weights(out))  # the model's own file is a plain model
    assert all(torch.equal(v, weights(tiny_bert)[k]) for k, v in weights(out).items() if k.startswith("bert."))
    model = AutoModelForMaskedLM.from_pretrained(str(out))
    adapter = load_ngram_adapter(model, str(out))
    assert adapter is not None and any(p.abs().sum() > 0 for p in adapter.outputs.parameters())  # it trained
    with open(out / "metrics.json") as f:
        report = json.load(f)["ngram_adapter"]
    assert report == {"ngrams": 3, "layers": 2, "frozen_model": True, "parameters": adapter_parameters(adapter)}
    files = {s: write_rows(tmp_path / f"{s}.jsonl", separable_task(16, i)) for i, s in enumerate(["train", "dev"])}
    assert run_cli(*finetune_args(str(out), files, tmp_path / "ft", "--seeds", "1", "--keep_models")) == 0
    assert os.path.isfile(tmp_path / "ft" / "seed-42" / "model" / "ngram_adapter.safetensors")


def adapter_parameters(adapter) -> int:
    return sum(p.numel() for p in adapter.parameters())


# --- long tail and new words --------------------------------------------------------------------------------------


def test_long_tail_ranks_a_planted_rare_fragmented_word_first(tmp_path, tiny_bert):
    rng = random.Random(0)
    planted = [f" {rng.choice(['the', 'a', 'my'])} zyxqvw {rng.choice(['reads', 'loads'])} it." for _ in range(50)]
    domain = [doc + (planted[i // 4] if i % 4 == 0 else "") for i, doc in enumerate(synthetic_documents(200, seed=1))]
    glossary = write(tmp_path / "g.tsv", "zyxqvw\ta made-up word\n")
    argv = ["mine", "--corpus", f"d={write_jsonl(tmp_path / 'd.jsonl', domain)}", "--against",
            f"g={write_jsonl(tmp_path / 'g.jsonl', synthetic_documents(200, seed=2))}", "--model_name_or_path",
            tiny_bert, "--long_tail", "--glossary", glossary, "--output_dir", str(tmp_path / "out")]  # fmt: skip
    assert main(argv) == 0
    with open(tmp_path / "out" / "long_tail.tsv", encoding="utf-8") as f:
        header, *rows = [line.rstrip("\n").split("\t") for line in f]
    first = dict(zip(header, rows[0], strict=True))
    assert first["word"] == "zyxqvw" and first["against_freq"] == "0" and first["in_glossary"] == "1", rows[:3]
    assert int(first["pieces"]) > max(int(dict(zip(header, r, strict=True))["pieces"]) for r in rows[1:])
    assert float(first["mlm_loss"]) > 0 and int(first["contexts"]) == 4
    assert "## The long tail" in (tmp_path / "out" / "README.md").read_text(encoding="utf-8")


def test_contrast_mining_keeps_only_words_absent_from_the_reference(tmp_path):
    rng = random.Random(1)
    old = synthetic_documents(150, seed=4)
    new = [f"{doc} {rng.choice(['the', 'a', 'my', 'one'])} flux capacitor {rng.choice(['reads', 'loads', 'binds'])}"
           if i % 3 == 0 else doc for i, doc in enumerate(synthetic_documents(150, seed=5))]  # fmt: skip
    argv = ["mine", "--corpus", f"new={write_jsonl(tmp_path / 'new.jsonl', new)}", "--against",
            f"old={write_jsonl(tmp_path / 'old.jsonl', old)}", "--output_dir"]  # fmt: skip
    assert main([*argv, str(tmp_path / "all")]) == 0
    assert main([*argv, str(tmp_path / "new"), "--max_against_count", "0"]) == 0
    words = {name: [line.split("\t")[0] for line in (tmp_path / name / "words.tsv").read_text().splitlines()[1:]]
             for name in ("all", "new")}  # fmt: skip
    assert words["new"] and set(words["new"]) < set(words["all"])
    assert all("flux" in w or "capacitor" in w for w in words["new"]), words["new"]


# --- arms of an experiment ----------------------------------------------------------------------------------------


def test_glossary_triples_and_ngram_adapter_arms_plan_and_report(tmp_path, tiny_bert):
    import yaml

    from dontstop.experiment import load_experiment
    from dontstop.records import PretrainMetrics, StageSummary
    from dontstop.report.sections import stage_line

    data = tmp_path / "data"
    data.mkdir()
    write_jsonl(data / "domain.jsonl", synthetic_documents(60, seed=1))
    write_jsonl(data / "general.jsonl", synthetic_documents(30, seed=2))
    for split, seed in (("train", 0), ("dev", 1)):
        write_rows(data / f"{split}.jsonl", separable_task(16, seed))
    write(data / "glossary.tsv", GLOSSARY)
    write(data / "facts.tsv", "kernel\tpart_of\toperating system\n")
    config = {
        "model": tiny_bert, "corpora": {"domain": "data/domain.jsonl", "general": "data/general.jsonl"},
        "task": {"train": "data/train.jsonl", "dev": "data/dev.jsonl"}, "inspect": False, "mine": {"long_tail": True},
        "held_out": {"documents": 10},
        "arms": ["tapt", {"name": "tapt-glossary", "arm": "tapt", "pretrain": {"glossary": "data/glossary.tsv"}},
                 {"name": "tapt-facts", "arm": "tapt", "pretrain": {"triples": "data/facts.tsv"}},
                 {"name": "tapt-ngram", "arm": "tapt", "pretrain": {"ngram_adapter": True}}],
    }  # fmt: skip
    (tmp_path / "x.yaml").write_text(yaml.safe_dump(config))
    plan = load_experiment(str(tmp_path / "x.yaml"), str(tmp_path / "out"))
    mine = next(s for s in plan.stages if s.kind == "mine")
    assert mine.options["model_name_or_path"] == tiny_bert  # the long tail of the model the arms start from
    tapt, glossary, facts, ngram = (arm.chain[-1].options for arm in plan.arms)
    assert glossary["glossary"] == str(data / "glossary.tsv") and facts["triples"] == str(data / "facts.tsv")
    assert glossary["knowledge_terms"].path == "long_tail.tsv" and glossary["knowledge_terms"].stage is mine
    assert ngram["ngrams"].path == "words.tsv" and "ngrams" not in tapt and "knowledge_terms" not in tapt
    metrics = PretrainMetrics(
        "mlm", knowledge={"terms_expanded": 31, "distinct_terms": 4, "examples_with_terms": 20, "examples": 80},
        ngram_adapter={"ngrams": 120, "layers": 2, "parameters": 1, "frozen_model": False},
    )  # fmt: skip
    line = stage_line(StageSummary("tapt.tapt-glossary", "pretrain", metrics=metrics))
    assert "knowledge: 31 terms (4 distinct) expanded in 20 of 80 examples" in line and "120 n-grams" in line
