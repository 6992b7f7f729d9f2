"""Task metrics: what `dontstop finetune` reports, from predicted and gold labels (names, not ids).

- single_label: accuracy, macro-F1 (the paper's headline metric), micro-F1 (equal to accuracy for one label per
  example; kept because the paper reports it for ChemProt and RCT).
- multi_label: micro-F1, macro-F1 over labels, and subset accuracy (every label of an example right).
- token: entity-level precision, recall and F1 as conlleval computes them (an entity counts only when its type and
  both boundaries are right; an I- tag after O starts an entity), via `seqeval`; macro entity F1 over entity types;
  and token accuracy.

F1 of a class with no gold and no predicted example is left out of macro averages (scikit-learn's convention);
a class with gold examples and no predictions scores 0.

Per class (`per_class`): precision, recall, F1 and support of every label (single_label, multi_label) or entity
type (token), so a macro-F1 far below accuracy can be traced to the classes that fail.
"""

from __future__ import annotations

import warnings

import numpy as np

PRIMARY_METRIC = {"single_label": "macro_f1", "multi_label": "macro_f1", "token": "entity_f1"}
METRICS = {
    "single_label": ("accuracy", "macro_f1", "micro_f1"),
    "multi_label": ("micro_f1", "macro_f1", "subset_accuracy"),
    "token": ("entity_f1", "entity_precision", "entity_recall", "entity_macro_f1", "token_accuracy"),
}


def _single_label(gold: list[str], predicted: list[str]) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, f1_score

    return {
        "accuracy": float(accuracy_score(gold, predicted)),
        "macro_f1": float(f1_score(gold, predicted, average="macro", zero_division=0)),
        "micro_f1": float(f1_score(gold, predicted, average="micro", zero_division=0)),
    }


def _multi_label(gold: list[list[str]], predicted: list[list[str]]) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, f1_score
    from sklearn.preprocessing import MultiLabelBinarizer

    binarizer = MultiLabelBinarizer().fit(gold + predicted)
    y_true, y_pred = binarizer.transform(gold), binarizer.transform(predicted)
    present = np.flatnonzero(y_true.sum(0) + y_pred.sum(0))
    return {
        "micro_f1": float(f1_score(y_true, y_pred, average="micro", zero_division=0)),
        "macro_f1": float(f1_score(y_true[:, present], y_pred[:, present], average="macro", zero_division=0)),
        "subset_accuracy": float(accuracy_score(y_true, y_pred)),
    }


def _token(gold: list[list[str]], predicted: list[list[str]]) -> dict[str, float]:
    from seqeval.metrics import f1_score, precision_score, recall_score

    with warnings.catch_warnings():  # seqeval warns for tags outside BIO ("O" only sets, a plain "PER")
        warnings.simplefilter("ignore")
        scores = {
            "entity_f1": float(f1_score(gold, predicted, zero_division=0)),
            "entity_precision": float(precision_score(gold, predicted, zero_division=0)),
            "entity_recall": float(recall_score(gold, predicted, zero_division=0)),
            "entity_macro_f1": float(f1_score(gold, predicted, average="macro", zero_division=0)),
        }
    tags = [(g, p) for gs, ps in zip(gold, predicted, strict=True) for g, p in zip(gs, ps, strict=True)]
    scores["token_accuracy"] = sum(g == p for g, p in tags) / max(1, len(tags))
    return scores


SCORERS = {"single_label": _single_label, "multi_label": _multi_label, "token": _token}


def score(task_type: str, gold: list, predicted: list) -> dict[str, float]:
    """Metrics for one split; values are fractions in [0, 1]."""
    if len(gold) != len(predicted):
        raise ValueError(f"{len(gold)} gold examples but {len(predicted)} predictions")
    return SCORERS[task_type](gold, predicted)


CLASS_METRICS = ("precision", "recall", "f1", "support")


def per_class(task_type: str, gold: list, predicted: list, labels: list[str]) -> dict[str, dict]:
    """{class: {"precision", "recall", "f1", "support"}} of one split: every label of `labels` (in that order), or
    for a token task every entity type found in gold or prediction."""
    if task_type == "token":
        from seqeval.metrics import classification_report

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            report = classification_report(gold, predicted, output_dict=True, zero_division=0)
        rows = {name: values for name, values in report.items() if not name.endswith(" avg")}
        return {
            name: {"precision": float(r["precision"]), "recall": float(r["recall"]), "f1": float(r["f1-score"]),
                   "support": int(r["support"])}
            for name, r in sorted(rows.items())
        }  # fmt: skip
    from sklearn.metrics import precision_recall_fscore_support

    if task_type == "multi_label":
        from sklearn.preprocessing import MultiLabelBinarizer

        binarizer = MultiLabelBinarizer(classes=labels).fit([labels])
        gold, predicted = binarizer.transform(gold), binarizer.transform(predicted)
        columns = {"labels": None}
    else:
        columns = {"labels": labels}
    precision, recall, f1, support = precision_recall_fscore_support(
        gold, predicted, average=None, zero_division=0, **columns
    )
    return {
        label: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(n)}
        for label, p, r, f, n in zip(labels, precision, recall, f1, support, strict=True)
    }


def aggregate(values: list[float]) -> dict:
    """Mean and sample standard deviation (ddof=1, as papers report over seeds; None for one seed)."""
    array = np.asarray(values, dtype=float)
    return {
        "mean": float(array.mean()),
        "std": float(array.std(ddof=1)) if len(array) > 1 else None,
        "n": len(array),
        "values": [float(v) for v in array],
    }


def mean_std_percent(stats: dict) -> str:
    """An `aggregate` as "mean ± std" in percent, one decimal ("n/a" for the std of one seed)."""
    std = "n/a" if stats["std"] is None else f"{100 * stats['std']:.1f}"
    return f"{100 * stats['mean']:.1f} ± {std}"
