"""Rebuild the demo's committed corpus samples from the shared datasets (deterministic: same input, same bytes).

    python examples/data/make_demo_sample.py --shared ../shared/data

software.jsonl: whole documents drawn (seed 0) from en/software.jsonl, every source in proportion, until 2.5 MB.
books.jsonl: the first paragraphs of chapters drawn (seed 0) from en/books.jsonl, until 250 kB: general English,
the held-out set that measures forgetting.
debian/{train,dev,test}.jsonl: the Debian package-section task, drawn stratified by label (seed 0) from
en/debian_sections, descriptions cut to their first 600 characters (at a word boundary).
debian_pool.jsonl: unlabeled Debian package descriptions (en/debian_sections/unlabeled.jsonl, seed 0, cut the same
way), the task-like part of the demo's domain corpus and of kNN-TAPT's pool.
"""

from __future__ import annotations

import argparse
import json
import os
import random


def sample(path: str, budget: int, seed: int, max_chars: int | None = None) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        records = [json.loads(line) for line in f]
    random.Random(seed).shuffle(records)
    chosen, size = [], 0
    for record in records:
        text = record["text"][:max_chars] if max_chars else record["text"]
        if max_chars:
            text = text[: text.rfind("\n")] if "\n" in text else text
        line = json.dumps({"text": text, "source": record["source"], "id": record["id"]}, ensure_ascii=False)
        if size + len(line.encode()) > budget:
            continue
        chosen.append(json.loads(line))
        size += len(line.encode()) + 1
    return sorted(chosen, key=lambda r: r["id"])


def cut(text: str, max_chars: int) -> str:
    return text if len(text) <= max_chars else text[:max_chars].rsplit(" ", 1)[0]


def stratified(path: str, n: int, seed: int, max_chars: int) -> list[dict]:
    """`n` records in the label proportions of the file (at least 2 per label), in file order."""
    with open(path, encoding="utf-8") as f:
        records = [json.loads(line) for line in f]
    by_label: dict[str, list[int]] = {}
    for i, record in enumerate(records):
        by_label.setdefault(record["label"], []).append(i)
    rng = random.Random(seed)
    chosen = []
    for label in sorted(by_label):
        rows = by_label[label]
        chosen += rng.sample(rows, max(2, round(n * len(rows) / len(records))))
    keep = ("text", "label", "package")
    return [{k: cut(records[i][k], max_chars) if k == "text" else records[i][k] for k in keep} for i in sorted(chosen)]


def unlabeled(path: str, n: int, seed: int, max_chars: int) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        records = [json.loads(line) for line in f]
    rows = sorted(random.Random(seed).sample(range(len(records)), n))
    return [{"text": cut(records[i]["text"], max_chars), "source": "debian", "id": records[i]["package"]} for i in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", default=os.path.join(os.path.dirname(__file__), "../../../shared/data"))
    parser.add_argument("--out", default=os.path.dirname(os.path.abspath(__file__)))
    args = parser.parse_args()
    outputs = {
        "software.jsonl": sample(os.path.join(args.shared, "en/software.jsonl"), 2_500_000, seed=0, max_chars=40_000),
        "books.jsonl": sample(os.path.join(args.shared, "en/books.jsonl"), 250_000, seed=0, max_chars=4_000),
    }
    debian = os.path.join(args.shared, "en/debian_sections")
    for split, n in (("train", 1000), ("dev", 300), ("test", 600)):
        outputs[f"debian/{split}.jsonl"] = stratified(os.path.join(debian, f"{split}.jsonl"), n, seed=0, max_chars=600)
    outputs["debian_pool.jsonl"] = unlabeled(os.path.join(debian, "unlabeled.jsonl"), 3000, seed=0, max_chars=600)
    for name, records in outputs.items():
        os.makedirs(os.path.dirname(os.path.join(args.out, name)), exist_ok=True)
        with open(os.path.join(args.out, name), "w", encoding="utf-8") as f:
            for record in records:
                f.write(json.dumps(record, ensure_ascii=False) + "\n")
        print(f"{name}: {len(records)} documents, {sum(len(r['text']) for r in records):,} characters")


if __name__ == "__main__":
    main()
