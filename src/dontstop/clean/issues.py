"""Confident learning (Northcutt et al. 2021) over out-of-fold probabilities, by `cleanlab`: which examples' given
labels are likely wrong, ranked by self-confidence (the probability the model gives the given label, lowest first),
and how noisy each class is estimated to be (from the confident joint of given and true labels)."""

from __future__ import annotations

import numpy as np

from ..scoring import score


def confident_learning(
    label_ids: np.ndarray,
    probabilities: np.ndarray,
    labels: list[str],
    filter_by: str,
    max_issues: float | None = None,
):
    """(the indices flagged, most suspect first, at most `max_issues`; how many confident learning flagged before
    that cap; {class: its examples, its flagged examples and its noise estimates})."""
    from cleanlab.dataset import rank_classes_by_label_quality
    from cleanlab.filter import find_label_issues

    found = find_label_issues(
        label_ids, probabilities, filter_by=filter_by, return_indices_ranked_by="self_confidence", n_jobs=1
    )
    ranked = cap(np.asarray(found, dtype=int), max_issues, len(label_ids))
    table = rank_classes_by_label_quality(labels=label_ids, pred_probs=probabilities)
    flagged = np.bincount(label_ids[ranked], minlength=len(labels))
    examples = np.bincount(label_ids, minlength=len(labels))
    per_class = {}
    for row in sorted(table.to_dict("records"), key=lambda r: r["Class Index"]):
        k = int(row["Class Index"])
        per_class[labels[k]] = {
            "examples": int(examples[k]),
            "flagged": int(flagged[k]),
            "estimated_issues": int(row["Label Issues"]),
            "noise": round(float(row["Label Noise"]), 4),
            "inverse_noise": round(float(row["Inverse Label Noise"]), 4),
        }
    return ranked, len(found), per_class


def out_of_fold_scores(label_ids: np.ndarray, probabilities: np.ndarray, labels: list[str]) -> dict:
    """How well the out-of-fold predictions agree with the given labels (a weak model flags its own mistakes), and
    their log-loss (an overconfident one flags correct labels confidently)."""
    from sklearn.metrics import log_loss

    names = np.asarray(labels)
    found = score("single_label", list(names[label_ids]), list(names[probabilities.argmax(1)]))
    clipped = np.clip(probabilities, 1e-15, 1)
    loss = log_loss(label_ids, clipped / clipped.sum(1, keepdims=True), labels=range(len(labels)))
    return {
        "accuracy": round(found["accuracy"], 4),
        "macro_f1": round(found["macro_f1"], 4),
        "log_loss": round(loss, 4),
    }


def cap(ranked: np.ndarray, max_issues: float | None, examples: int) -> np.ndarray:
    """The most suspect of the flagged examples: at most `max_issues` (a share of the examples below 1, else a
    count); all of them without a cap."""
    if max_issues is None:
        return ranked
    limit = int(max_issues * examples) if max_issues < 1 else int(max_issues)
    return ranked[:limit]


def issue_rows(split, label_ids: np.ndarray, probabilities: np.ndarray, labels: list[str], ranked) -> list[dict]:
    """One row per flagged example, most suspect first: its line, text, given and suggested label, and scores."""
    rows = []
    for rank, i in enumerate(ranked, start=1):
        suggested = int(probabilities[i].argmax())
        row = {"rank": rank, "line": split.lines[i], "text": split.texts[i]}
        if split.pairs is not None:
            row["text_pair"] = split.pairs[i]
        row.update(
            given_label=labels[label_ids[i]],
            suggested_label=labels[suggested],
            score=round(float(probabilities[i, label_ids[i]]), 4),  # self-confidence: P(given label)
            suggested_probability=round(float(probabilities[i, suggested]), 4),
        )
        rows.append(row)
    return rows
