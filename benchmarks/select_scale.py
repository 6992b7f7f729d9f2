"""`dontstop select` at scale: a pool of a million paragraphs against 10,000 task examples, on this machine.

    .venv/bin/python benchmarks/select_scale.py             # full run; writes results-select_scale-cpu.txt
    .venv/bin/python benchmarks/select_scale.py --prepare   # only build the cached pool and queries
    .venv/bin/python benchmarks/select_scale.py --smoke     # 5,000 documents, to check the script (no results file)

The pool (built once, cached in benchmarks/.cache/select_pool_1m.jsonl): every corpus in ../shared/data (each .jsonl
under it, plus zh/peoples_daily_1998.raw.txt, one paragraph per line) split into paragraphs, empty ones dropped, and
repeats dropped (same text after NFKC, case folding and whitespace collapsing, the identity `dontstop select` uses for
duplicates): 608,519 distinct paragraphs of 706,462. The rest of `--pool_size` are variations: two consecutive
paragraphs of the same document joined with a space (id suffix /v2), drawn at random (seeded) from all such pairs and
kept only if new; three (/v3) and more if pairs run out. The million is 608,519 paragraphs + 391,481 pairs (230 MB),
with no duplicate text, exact or normalised (checked at build time). Records are {"text", "source", "id"} with id
"<source>/<document>/<paragraph>[/vN]", shuffled (seeded) so the sources are mixed. A smaller --pool_size is a seeded
sample of the distinct paragraphs. The queries are the Debian section task's train.jsonl (9,663) topped up from
dev.jsonl (cached too); `dontstop select` excludes the pool's copies of them (leakage), so does the reference.

Two sides, each a fresh process timed from start to exit (start-up and reading included), its peak RSS taken from
os.wait4 (the process and its descendants):

- dontstop: `python -m dontstop select --embedder bow --index flat --k 50` (streamed pool, hashed TF-IDF + SVD
  vectors in a faiss index, selected.jsonl written back);
- reference, the standard way (`--run_reference`): all pool texts in a Python list, scikit-learn's
  `TfidfVectorizer(sublinear_tf=True, stop_words="english", min_df=2)` fitted on task + pool texts, and
  `NearestNeighbors(n_neighbors=k, metric="cosine", algorithm="brute")` (default n_jobs), the union of each task
  example's k neighbours; pool texts equal to a task text are dropped first.

`--reference_docs N` runs the reference on the first N pool documents only, and dontstop on the same N as well, so the
ratio compares like with like; dontstop's full-pool figure is then reported on its own row. The Jaccard overlap of the
two selections on the same pool is a sanity check (different representations, so not 1). Targets, for dontstop on
1,000,000 documents: under 10 minutes and under 8 GB peak RSS. Run it on an otherwise idle machine (the load average
at start is printed): on 2 busy cores, OpenBLAS's two threads make bow's SVD fit several times slower.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import tempfile
import time

from measure import measure  # benchmarks/ is on sys.path when a benchmark runs as a script

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.normpath(os.path.join(HERE, "..", "..", "shared", "data"))
RESULTS = os.path.join(HERE, "results-select_scale-cpu.txt")
FULL = {"pool_size": 1_000_000, "queries": 10_000, "k": 50}
TARGET_SECONDS, TARGET_BYTES = 600, 8 * 10**9


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data_dir", default=DATA, help="the shared corpora")
    parser.add_argument("--cache_dir", default=os.path.join(HERE, ".cache"), help="where pool and queries are cached")
    parser.add_argument("--pool_size", type=int, default=FULL["pool_size"])
    parser.add_argument("--queries", type=int, default=FULL["queries"], help="task examples (train, then dev)")
    parser.add_argument("--k", type=int, default=FULL["k"])
    parser.add_argument("--index", default="flat", choices=["flat", "ivf", "hnsw"], help="dontstop's faiss index")
    parser.add_argument("--reference_docs", type=int, help="run the reference (and dontstop again) on the first N")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--smoke", action="store_true", help="5,000 documents, 200 queries, k=10; writes no results")
    parser.add_argument("--prepare", action="store_true", help="only build (or check) the cached pool and queries")
    parser.add_argument("--run_reference", nargs=4, metavar=("POOL", "QUERIES", "K", "OUT"), help=argparse.SUPPRESS)
    return parser


# --- the pool and the queries ------------------------------------------------------------------------------------


def normal_key(text: str) -> int:
    """What `dontstop select` counts as the same text (its own fingerprint)."""
    from dontstop.select import fingerprint

    return fingerprint(text)


def corpus_files(data_dir: str) -> list[tuple[str, str]]:
    """(source, path) of every corpus: en/software.jsonl is software, zh/reviews/train.jsonl is reviews.train."""
    found = []
    for root, dirs, files in os.walk(data_dir):
        dirs[:] = sorted(d for d in dirs if d != "build")
        for name in sorted(files):
            if name.endswith(".jsonl") or name == "peoples_daily_1998.raw.txt":
                path = os.path.join(root, name)
                language, *rest = os.path.splitext(os.path.relpath(path, data_dir))[0].split(os.sep)
                found.append((".".join(rest), path))
    return found


def read_documents(path: str):
    """Each document's non-empty paragraphs (a .txt line is one document of one paragraph)."""
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            text = json.loads(line)["text"] if path.endswith(".jsonl") else line.rstrip("\n")
            yield [p for p in text.split("\n") if p.strip()]


def build_pool(opts, path: str) -> dict:
    rng = random.Random(opts.seed)
    seen: set[int] = set()
    records, documents, stats = [], [], {"paragraphs": 0, "repeated_paragraphs": 0, "by_source": {}}
    for source, file in corpus_files(opts.data_dir):
        before = len(records)
        for d, paragraphs in enumerate(read_documents(file)):
            documents.append((source, d, paragraphs))
            for p, text in enumerate(paragraphs):
                stats["paragraphs"] += 1
                key = normal_key(text)
                if key in seen:
                    stats["repeated_paragraphs"] += 1
                    continue
                seen.add(key)
                records.append({"text": text, "source": source, "id": f"{source}/{d}/{p}"})
        stats["by_source"][source] = len(records) - before
    stats["distinct_paragraphs"] = len(records)
    stats["variations"] = {}
    width = 2
    while len(records) < opts.pool_size:
        windows = [(s, d, p, ps) for s, d, ps in documents for p in range(len(ps) - width + 1)]
        if not windows:
            break
        rng.shuffle(windows)
        added = 0
        for source, d, p, paragraphs in windows:
            text = " ".join(paragraphs[p : p + width])
            key = normal_key(text)
            if key not in seen:
                seen.add(key)
                records.append({"text": text, "source": source, "id": f"{source}/{d}/{p}/v{width}"})
                added += 1
                if len(records) == opts.pool_size:
                    break
        stats["variations"][f"v{width}"] = added
        width += 1
    del documents, seen
    rng.shuffle(records)
    records = records[: opts.pool_size]
    texts = [r["text"] for r in records]
    stats["exact_duplicates"] = len(texts) - len(set(texts))
    stats["normalised_duplicates"] = len(texts) - len({normal_key(t) for t in texts})
    del texts
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(f"{path}.tmp", "w", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
    os.replace(f"{path}.tmp", path)
    stats.update(documents=len(records), bytes=os.path.getsize(path), pool_size=opts.pool_size, seed=opts.seed)
    return stats


def pool(opts) -> tuple[str, dict, bool]:
    """The cached pool file, its build statistics, and whether it was built now."""
    label = f"{opts.pool_size // 10**6}m" if opts.pool_size % 10**6 == 0 else f"{opts.pool_size}"
    path = os.path.join(opts.cache_dir, f"select_pool_{label}.jsonl")
    meta = f"{path}.meta.json"
    if os.path.exists(path) and os.path.exists(meta):
        with open(meta, encoding="utf-8") as f:
            stats = json.load(f)
        if (stats["pool_size"], stats["seed"], stats["bytes"]) == (opts.pool_size, opts.seed, os.path.getsize(path)):
            return path, stats, False
    stats = build_pool(opts, path)
    with open(meta, "w", encoding="utf-8") as f:
        json.dump(stats, f, indent=2)
    return path, stats, True


def queries(opts) -> str:
    path = os.path.join(opts.cache_dir, f"select_queries_{opts.queries}.jsonl")
    if not os.path.exists(path):
        records = []
        for split in ("train", "dev"):
            with open(os.path.join(opts.data_dir, "en", "debian_sections", f"{split}.jsonl"), encoding="utf-8") as f:
                records += [json.loads(line) for line in f if line.strip()]
        if len(records) < opts.queries:
            sys.exit(f"--queries {opts.queries}: only {len(records)} Debian section train + dev examples")
        os.makedirs(opts.cache_dir, exist_ok=True)
        with open(f"{path}.tmp", "w", encoding="utf-8") as f:
            for r in records[: opts.queries]:
                f.write(json.dumps({"text": r["text"], "label": r["label"]}, ensure_ascii=False) + "\n")
        os.replace(f"{path}.tmp", path)
    return path


# --- the reference: what a notebook does ---------------------------------------------------------------------------


def run_reference(pool_path: str, queries_path: str, k: int, out: str) -> None:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.neighbors import NearestNeighbors

    timings, tick = {}, time.perf_counter()
    with open(queries_path, encoding="utf-8") as f:
        task = [json.loads(line)["text"] for line in f]
    texts, ids, task_set = [], [], set(task)
    with open(pool_path, encoding="utf-8") as f:
        for line in f:
            record = json.loads(line)
            if record["text"] not in task_set:
                texts.append(record["text"])
                ids.append(record["id"])
    timings["load_s"], tick = time.perf_counter() - tick, time.perf_counter()
    matrix = TfidfVectorizer(sublinear_tf=True, stop_words="english", min_df=2).fit_transform(task + texts)
    timings["tfidf_s"], tick = time.perf_counter() - tick, time.perf_counter()
    nn = NearestNeighbors(n_neighbors=min(k, len(texts)), metric="cosine", algorithm="brute").fit(matrix[len(task) :])
    _, neighbours = nn.kneighbors(matrix[: len(task)])
    timings["kneighbors_s"] = time.perf_counter() - tick
    selected = sorted({ids[i] for i in neighbours.ravel()})
    result = {"indexed": len(texts), "vocabulary": matrix.shape[1], "selected": selected, "timings": timings}
    with open(out, "w", encoding="utf-8") as f:
        json.dump(result, f)


# --- measuring -----------------------------------------------------------------------------------------------------


def run_ours(opts, pool_path: str, queries_path: str, work: str, name: str) -> dict:
    out = os.path.join(work, name)
    cmd = [sys.executable, "-m", "dontstop", "select", "--task_file", queries_path, "--pool", f"pool={pool_path}"]
    cmd += ["--k", str(opts.k), "--embedder", "bow", "--index", opts.index, "--seed", str(opts.seed)]
    run = measure(cmd + ["--output_dir", out, "--overwrite_output_dir"], f"{out}.log")
    with open(os.path.join(out, "selection.json"), encoding="utf-8") as f:
        report = json.load(f)
    with open(os.path.join(out, "selected.jsonl"), encoding="utf-8") as f:
        selected = {r["id"] for line in f if (r := json.loads(line))["origin"] == "pool"}
    run.update(indexed=report["index"]["documents"], leaked=sum(report["leaked"].values()))
    run.update(duplicates=report["duplicates"], timings=report["timings"], selected=selected)
    return run


def run_theirs(opts, pool_path: str, queries_path: str, work: str) -> dict:
    out = os.path.join(work, "reference.json")
    cmd = [sys.executable, os.path.abspath(__file__), "--run_reference", pool_path, queries_path, str(opts.k), out]
    run = measure(cmd, os.path.join(work, "reference.log"))
    with open(out, encoding="utf-8") as f:
        result = json.load(f)
    run.update(indexed=result["indexed"], timings={k: round(v, 2) for k, v in result["timings"].items()})
    run.update(selected=set(result["selected"]), vocabulary=result["vocabulary"])
    return run


def head(source: str, target: str, n: int) -> None:
    with open(source, encoding="utf-8") as src, open(target, "w", encoding="utf-8") as dst:
        for i, line in enumerate(src):
            if i == n:
                break
            dst.write(line)


def main(argv: list[str]) -> int:
    opts = make_parser().parse_args(argv)
    if opts.run_reference:
        pool_path, queries_path, k, out = opts.run_reference
        run_reference(pool_path, queries_path, int(k), out)
        return 0
    if opts.smoke:
        opts.pool_size, opts.queries, opts.k = 5000, 200, 10
    lines: list[str] = []

    def say(text: str = "") -> None:
        print(text, flush=True)
        lines.append(text)

    import faiss
    import numpy
    import sklearn

    say(
        f"python {platform.python_version()}  numpy {numpy.__version__}  scikit-learn {sklearn.__version__}  "
        f"faiss {faiss.__version__}  cpus {os.cpu_count()}  load average {os.getloadavg()[0]:.1f} at start"
    )
    tick = time.perf_counter()
    pool_path, stats, built = pool(opts)
    queries_path = queries(opts)
    how = f"built in {time.perf_counter() - tick:.0f} s" if built else "cached"
    say(
        f"pool {os.path.relpath(pool_path)} ({how}): {stats['documents']:,} documents, {stats['bytes'] / 1e6:.0f} MB; "
        f"{stats['exact_duplicates']} exact duplicates, {stats['normalised_duplicates']} after normalisation"
    )
    say(
        f"  from {stats['paragraphs']:,} paragraphs of {len(stats['by_source'])} corpora in {opts.data_dir} "
        f"({stats['repeated_paragraphs']:,} repeats dropped, {stats['distinct_paragraphs']:,} distinct)"
    )
    if stats["variations"]:
        added = ", ".join(f"{n:,} {v}" for v, n in stats["variations"].items())
        say(f"  topped up with variations: consecutive paragraphs of one document joined with a space ({added})")
    if stats["documents"] < opts.pool_size:
        say(f"  WARNING: only {stats['documents']:,} distinct documents could be made, not {opts.pool_size:,}")
    say(f"queries {os.path.relpath(queries_path)}: {opts.queries:,} Debian section train (+ dev) examples; k={opts.k}")
    if opts.prepare:
        return 0
    n = min(opts.reference_docs or stats["documents"], stats["documents"])
    if n < stats["documents"]:
        say(f"reference on the first {n:,} pool documents only (--reference_docs); dontstop on both")
    say()

    rows = []
    with tempfile.TemporaryDirectory(dir=opts.cache_dir) as work:
        ours_full = run_ours(opts, pool_path, queries_path, work, "ours_full")
        rows.append((f"dontstop select (bow, {opts.index})", stats["documents"], ours_full))
        same_pool = pool_path
        ours = ours_full
        if n < stats["documents"]:
            same_pool = os.path.join(work, f"pool_first{n}.jsonl")
            head(pool_path, same_pool, n)
            ours = run_ours(opts, same_pool, queries_path, work, "ours_subset")
            rows.append((f"dontstop select (bow, {opts.index})", n, ours))
        theirs = run_theirs(opts, same_pool, queries_path, work)
        rows.append(("reference: sklearn TF-IDF + brute kNN", n, theirs))

    say(f"{'':<40}{'documents':>11}{'indexed':>11}{'wall s':>9}{'docs/s':>10}{'peak RSS MB':>13}{'selected':>10}")
    for label, docs, run in rows:
        say(
            f"{label:<40}{docs:>11,}{run['indexed']:>11,}{run['seconds']:>9.1f}{docs / run['seconds']:>10,.0f}"
            f"{run['peak_rss_bytes'] / 2**20:>13,.0f}{len(run['selected']):>10,}"
        )
    say()
    for label, docs, run in rows:
        say(f"{label} on {docs:,}: " + ", ".join(f"{key} {value}" for key, value in run["timings"].items()))
    say(f"dontstop excluded {ours['leaked']:,} pool copies of task examples and {ours['duplicates']:,} repeats")
    say(f"reference vocabulary: {theirs['vocabulary']:,} words")
    union = ours["selected"] | theirs["selected"]
    jaccard = len(ours["selected"] & theirs["selected"]) / len(union) if union else 1.0
    say(f"overlap of the two selections on the same {n:,} documents: Jaccard {jaccard:.3f}")
    seconds, rss = ours_full["seconds"], ours_full["peak_rss_bytes"]
    verdict = {True: "PASS", False: "FAIL"}
    say(
        f"target for dontstop on {stats['documents']:,} documents (set for 1,000,000): wall {seconds:.0f} s < "
        f"{TARGET_SECONDS} s {verdict[seconds < TARGET_SECONDS]}; peak RSS {rss / 1e9:.2f} GB < "
        f"{TARGET_BYTES / 1e9:.0f} GB {verdict[rss < TARGET_BYTES]}"
    )
    time_ratio, rss_ratio = theirs["seconds"] / ours["seconds"], theirs["peak_rss_bytes"] / ours["peak_rss_bytes"]
    say(f"RATIO reference/dontstop wall time on {n:,} documents: {time_ratio:.2f}")
    say(f"RATIO reference/dontstop peak RSS on {n:,} documents: {rss_ratio:.2f}")
    if not opts.smoke and all(getattr(opts, key) == value for key, value in FULL.items()):
        with open(RESULTS, "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
        print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
