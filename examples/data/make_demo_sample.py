"""Rebuild the demo's committed corpus samples from the shared datasets (deterministic: same input, same bytes).

    python examples/data/make_demo_sample.py --shared ../shared/data

software.jsonl: whole documents drawn (seed 0) from en/software.jsonl, every source in proportion, until 2.5 MB.
books.jsonl: the first paragraphs of chapters drawn (seed 0) from en/books.jsonl, until 250 kB: general English,
the held-out set that measures forgetting.
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", default=os.path.join(os.path.dirname(__file__), "../../../shared/data"))
    parser.add_argument("--out", default=os.path.dirname(os.path.abspath(__file__)))
    args = parser.parse_args()
    outputs = {
        "software.jsonl": sample(os.path.join(args.shared, "en/software.jsonl"), 2_500_000, seed=0, max_chars=40_000),
        "books.jsonl": sample(os.path.join(args.shared, "en/books.jsonl"), 250_000, seed=0, max_chars=4_000),
    }
    for name, records in outputs.items():
        with open(os.path.join(args.out, name), "w", encoding="utf-8") as f:
            for record in records:
                f.write(json.dumps(record, ensure_ascii=False) + "\n")
        print(f"{name}: {len(records)} documents, {sum(len(r['text']) for r in records):,} characters")


if __name__ == "__main__":
    main()
