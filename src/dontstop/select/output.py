"""What `dontstop select` writes: the statistics (`selection.json`), `selected.jsonl`, the histogram of distances and
the README."""

from __future__ import annotations

import json
import os
from dataclasses import asdict

import numpy as np

from ..outputs import staged, write_json
from ..records import Selection


def statistics(args, task, pool_stats, curated_stats, chosen, similarity, k, embedder, index, records) -> Selection:
    total_selected = sum(s.selected for s in pool_stats)
    total_indexed = sum(s.indexed for s in pool_stats)
    pools = []
    for s in pool_stats:
        entry = asdict(s)
        entry["share_of_selected"] = round(100 * s.selected / total_selected, 2) if total_selected else 0.0
        entry["share_of_indexed"] = round(100 * s.indexed / total_indexed, 2) if total_indexed else 0.0
        pools.append(entry)
    report = {
        "strategy": args.strategy,
        "k": k if args.strategy == "knn" else None,
        "task_file": args.task_file,
        "task_examples": len(task),
        "task_sha256": task.sha256,
        "selected_pool_documents": total_selected,
        "records_written": len(records),
        "records_by_origin": {o: sum(r["origin"] == o for r in records) for o in ("task", "curated", "pool")},
        "pools": pools,
        "curated": [asdict(s) for s in curated_stats],
        "leaked": {  # pools and curated files together
            split: sum(s.leaked.get(split, 0) for s in pool_stats + curated_stats)
            for split in sorted({split for s in pool_stats + curated_stats for split in s.leaked})
        },
        "duplicates": sum(s.duplicates for s in pool_stats),
        "embedder": embedder.describe(),
        "index": {"kind": args.index, "documents": int(index.ntotal)},
        "settings": asdict(args),
    }
    if len(similarity):
        distance = 1.0 - similarity
        report["distance_to_nearest_task_example"] = {
            "mean": round(float(distance.mean()), 4),
            **{f"p{q}": round(float(np.percentile(distance, q)), 4) for q in (10, 50, 90)},
        }
    if args.strategy == "knn":
        votes = np.array([len(v) for v in chosen.values()])
        report["task_examples_per_document"] = {
            "mean": round(float(votes.mean()), 2) if len(votes) else 0.0,
            "max": int(votes.max()) if len(votes) else 0,
        }
        report["overlap_between_neighbourhoods"] = (
            round(1 - len(chosen) / (k * len(task)), 4) if len(task) and k else 0.0
        )
    return Selection.from_dict(report)


def write_outputs(args, records, report: Selection, similarity, owners, pool_stats) -> None:
    with staged(args.output_dir) as path:
        with open(path("selected.jsonl"), "w", encoding="utf-8") as f:
            for record in records:
                f.write(json.dumps(record, ensure_ascii=False) + "\n")
        histogram(path("distances.png"), 1.0 - similarity, owners, [s.name for s in pool_stats])
        write_json(path(Selection.FILE), report.to_dict())
        write_json(path("dontstop_config.json"), asdict(args))
        write_readme(path("README.md"), report.to_dict())


def histogram(path: str, distance: np.ndarray, owners: np.ndarray, names: list[str]) -> None:
    """Distances of the selected documents to their nearest task example, stacked by pool."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    present = [p for p in range(len(names)) if (owners == p).any()]
    if present:
        ax.hist([distance[owners == p] for p in present], bins=40, stacked=True, label=[names[p] for p in present])
        ax.legend(title="pool")
    ax.set_xlabel("cosine distance to the nearest task example")
    ax.set_ylabel("selected documents")
    ax.set_title("Selected documents by distance")
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)


def write_readme(path: str, report: dict) -> None:
    s = report["settings"]
    what = (
        f"each task example's {report['k']} nearest pool documents (union, deduplicated)"
        if report["strategy"] == "knn"
        else "a seeded random sample of the pool (the control for kNN selection)"
    )
    lines = [
        "# Selected text for task-adaptive pretraining",
        "",
        f"Made by `dontstop select`: {what}, for the {report['task_examples']:,} task examples of "
        f"`{report['task_file']}`, embedded with `{report['embedder']['embedder']}` "
        f"({report['embedder']['dim']} dimensions) and searched with a `{report['index']['kind']}` faiss index.",
        "",
        f"`selected.jsonl` holds {report['records_written']:,} records: "
        + ", ".join(f"{n:,} {origin}" for origin, n in report["records_by_origin"].items() if n)
        + ". Pretrain on it with:",
        "",
        "```sh",
        f"dontstop pretrain --model_name_or_path MODEL --train_file {os.path.join(s['output_dir'], 'selected.jsonl')}"
        " --output_dir runs/tapt",
        "```",
        "",
        "| pool | documents | leaked (excluded) | duplicates | indexed | selected | share of selected "
        "| share of all indexed |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for p in report["pools"]:
        leaked = sum(p["leaked"].values())
        lines.append(
            f"| {p['name']} | {p['documents']:,} | {leaked:,} | {p['duplicates']:,} | {p['indexed']:,} | "
            f"{p['selected']:,} | {p['share_of_selected']:.1f}% | {p['share_of_indexed']:.1f}% |"
        )
    lines += [""]
    if report["leaked"]:
        lines.append(
            "Leakage guard: pool documents whose text equals a task text (after NFKC, case folding and whitespace "
            "collapsing) were excluded: " + ", ".join(f"{n:,} from {split}" for split, n in report["leaked"].items())
            + "."
        )  # fmt: skip
        lines.append("")
    distance = report.get("distance_to_nearest_task_example")
    if distance:
        lines += [
            f"Cosine distance of the selected documents to their nearest task example: mean {distance['mean']:.3f}, "
            f"10th/50th/90th percentile {distance['p10']:.3f} / {distance['p50']:.3f} / {distance['p90']:.3f}.",
            "",
            "![distances](distances.png)",
            "",
        ]
    t = report["timings"]
    lines.append(f"Time: {t['total_s']:.0f} s (" + ", ".join(f"{k[:-2]} {v:.0f} s" for k, v in t.items()) + ").")
    lines.append("")
    lines.append("Every setting is in `selection.json` and `dontstop_config.json`.")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
