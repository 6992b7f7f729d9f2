"""Confident learning (Northcutt et al. 2021) over out-of-fold probabilities, by `cleanlab`: which examples' given
labels are likely wrong, ranked by self-confidence (the probability the model gives the given label, lowest first),
and how noisy each class is estimated to be (from the confident joint of given and true labels)."""

from __future__ import annotations

import numpy as np

from ..scoring import score


def confident_learning(label_ids: np.ndarray, probabilities: np.ndarray, labels: list[str], filter_by: str):
    """(the indices of the flagged examples, most suspect first; {class: its noise estimates})."""
    from cleanlab.dataset import rank_classes_by_label_quality
    from cleanlab.filter import find_label_issues

    ranked = find_label_issues(
        label_ids, probabilities, filter_by=filter_by, return_indices_ranked_by="self_confidence", n_jobs=1
    )
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
    return np.asarray(ranked, dtype=int), per_class


def out_of_fold_scores(label_ids: np.ndarray, probabilities: np.ndarray, labels: list[str]) -> dict:
    """How well the out-of-fold predictions agree with the given labels: a weak model flags its own mistakes."""
    names = np.asarray(labels)
    found = score("single_label", list(names[label_ids]), list(names[probabilities.argmax(1)]))
    return {"accuracy": round(found["accuracy"], 4), "macro_f1": round(found["macro_f1"], 4)}


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
