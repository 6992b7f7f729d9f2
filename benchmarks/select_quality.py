"""Does kNN selection retrieve the right text? kNN against random selection of the same size, on the shared data.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/select_quality.py

Pool: four corpora of ../shared/data: the English software documentation (`software`), Jane Austen (`books`), the
GCIDE dictionary (`dictionary`), and the unlabeled descriptions of the Debian packages outside the task
(`debian`). Queries: the Debian package-section task's training texts (9,663); its dev and test texts are guarded
against. For each k, `dontstop select` runs with the bow embedder, `--strategy knn` and then `--strategy random`
(the same number of documents, seeded). Reported per run: the share of the selected pool documents from each pool;
the share from the task-like pools (debian + software), which the issue asks for; and, for the Debian documents
selected, the share whose Debian section is one of the task's 23 labels (the sections it excludes, such as libs,
python or doc, are the near-misses). The `section` field is metadata of the pool, never used by the selection.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
import time

SHARED = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data"))
RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results-select_quality-cpu.txt")


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=SHARED, help="the shared data directory")
    parser.add_argument("--k", type=int, nargs="+", default=[5, 50])
    parser.add_argument("--output", default=RESULTS, help="where the results table is written")
    return parser


def run(args, task_dir: str, k: int, strategy: str, output_dir: str) -> dict:
    from dontstop.select import SelectArguments, run_select

    en = os.path.join(args.data, "en")
    select_args = SelectArguments(
        task_file=os.path.join(task_dir, "train.jsonl"),
        validation_file=os.path.join(task_dir, "dev.jsonl"),
        test_file=os.path.join(task_dir, "test.jsonl"),
        pool=[
            f"software={en}/software.jsonl",
            f"books={en}/books.jsonl",
            f"dictionary={en}/dictionary.jsonl",
            f"debian={task_dir}/unlabeled.jsonl",
        ],
        k=k,
        strategy=strategy,
        metadata_columns="id,source,section",
        output_dir=output_dir,
    )
    started = time.perf_counter()
    report = run_select(select_args).to_dict()
    report["wall_s"] = time.perf_counter() - started
    with open(os.path.join(output_dir, "selected.jsonl"), encoding="utf-8") as f:
        report["debian_sections"] = [r["section"] for r in map(json.loads, f) if r.get("pool") == "debian"]
    return report


def main() -> None:
    args = make_parser().parse_args()
    logging.basicConfig(level=logging.WARNING)
    task_dir = os.path.join(args.data, "en", "debian_sections")
    with open(os.path.join(task_dir, "train.jsonl"), encoding="utf-8") as f:
        task_labels = {json.loads(line)["label"] for line in f}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for k in args.k:
            for strategy in ("knn", "random"):
                report = run(args, task_dir, k, strategy, os.path.join(tmp, f"{strategy}{k}"))
                shares = {p["name"]: p["share_of_selected"] for p in report["pools"]}
                sections = report["debian_sections"]
                in_task = 100 * sum(s in task_labels for s in sections) / len(sections) if sections else 0.0
                rows.append(
                    {
                        "k": k,
                        "strategy": strategy,
                        "documents": report["selected_pool_documents"],
                        "shares": shares,
                        "task_like": shares["debian"] + shares["software"],
                        "debian_in_task_sections": in_task,
                        "distance": report["distance_to_nearest_task_example"]["p50"],
                        "wall_s": report["wall_s"],
                        "leaked": report["leaked"],
                    }
                )
                print(f"k={k} {strategy}: {rows[-1]}", flush=True)
    pool_share = {p["name"]: p["share_of_indexed"] for p in report["pools"]}
    lines = [
        "kNN against random selection: 9,663 Debian-task training texts as queries, bow embedder, flat index",
        "pool shares (of the indexed documents): " + ", ".join(f"{n} {s:.1f}%" for n, s in pool_share.items()),
        f"leakage guard: {sum(rows[0]['leaked'].values())} pool documents excluded (equal to a task text)",
        "",
        "| k | strategy | documents | debian | software | books | dictionary | debian + software "
        "| Debian docs in a task section | median distance | time |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        s = r["shares"]
        lines.append(
            f"| {r['k']} | {r['strategy']} | {r['documents']:,} | {s['debian']:.1f}% | {s['software']:.1f}% | "
            f"{s['books']:.1f}% | {s['dictionary']:.1f}% | {r['task_like']:.1f}% | "
            f"{r['debian_in_task_sections']:.1f}% | {r['distance']:.3f} | {r['wall_s']:.0f} s |"
        )
    text = "\n".join(lines)
    print(text)
    with open(args.output, "w", encoding="utf-8") as f:
        f.write(text + "\n")


if __name__ == "__main__":
    main()
