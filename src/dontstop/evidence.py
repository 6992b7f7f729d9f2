"""The statistics of comparing an arm with the baseline: over seeds (paired or Welch's t-test, Wilcoxon's signed-rank
test, Holm's correction for several arms, the power of the design) and over test examples (a paired bootstrap).

Seeds are paired when both runs drew the same training examples for each seed (`dontstop finetune` records a
fingerprint of the draw); then the arms differ only in the checkpoint (the same draw, head initialisation and data
order), the per-seed differences cancel the spread between draws, and the paired t-test applies. Otherwise the seeds
are independent samples and Welch's test is used, with a note saying why.
"""

from __future__ import annotations

import contextlib
import math
import statistics
import warnings

import numpy as np

ALPHA = 0.05
POWER = 0.8
RESAMPLES = 1000


def _none(delta: float, note: str) -> dict:
    return {"delta": delta, "t": None, "df": None, "ci_low": None, "ci_high": None, "p_value": None, "p_note": note}


def constant(values: list[float]) -> bool:
    """No spread beyond floating-point noise (0.1 - 0.2 at every seed differs in the 17th digit)."""
    return statistics.pstdev(values) <= 1e-12 * max(1.0, max(abs(v) for v in values))


@contextlib.contextmanager
def quiet_scipy():
    """scipy's RuntimeWarnings about nearly identical data: the degenerate cases are caught before it is called."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


def welch(a: list[float], b: list[float]) -> dict:
    """Welch's t-test of mean(b) - mean(a): delta, t, df, 95% CI and two-sided p, or p None with the reason."""
    from scipy import stats

    delta = statistics.fmean(b) - statistics.fmean(a)
    if len(a) < 2 or len(b) < 2:
        out = _none(delta, "fewer than 2 seeds on a side")
    elif constant(a) and constant(b):
        out = _none(delta, "no variance on either side")
    else:
        with quiet_scipy():  # one constant side is fine for Welch; scipy warns of it all the same
            result = stats.ttest_ind(b, a, equal_var=False)
        ci = result.confidence_interval(confidence_level=1 - ALPHA)
        out = {"delta": delta, "t": float(result.statistic), "df": float(result.df), "p_value": float(result.pvalue)}
        out.update(ci_low=float(ci.low), ci_high=float(ci.high), p_note=None)
    out["test"] = "Welch's t-test"
    out["significant"] = out["p_value"] is not None and out["p_value"] < ALPHA
    return out


def paired(a: list[float], b: list[float]) -> dict:
    """The paired t-test of the per-seed differences b - a (same order), and Wilcoxon's signed-rank test beside it."""
    from scipy import stats

    differences = [y - x for x, y in zip(a, b, strict=True)]
    delta = statistics.fmean(differences)
    if len(differences) < 2:
        out = _none(delta, "fewer than 2 paired seeds")
    elif constant(differences):
        out = _none(delta, "the same difference at every seed" if delta else "no difference at any seed")
    else:
        with quiet_scipy():
            result = stats.ttest_rel(b, a)
        ci = result.confidence_interval(confidence_level=1 - ALPHA)
        out = {"delta": delta, "t": float(result.statistic), "df": float(result.df), "p_value": float(result.pvalue)}
        out.update(ci_low=float(ci.low), ci_high=float(ci.high), p_note=None)
    out["test"] = "paired t-test"
    out["wilcoxon_p"] = wilcoxon(differences)
    out["significant"] = out["p_value"] is not None and out["p_value"] < ALPHA
    return out


def wilcoxon(differences: list[float]) -> float | None:
    """Two-sided p of Wilcoxon's signed-rank test (exact for few seeds), or None when every difference is zero. With
    n seeds its smallest possible p is 2 / 2**n: 0.25 for 3 seeds, 0.0625 for 5."""
    from scipy import stats

    if not any(differences):
        return None
    return float(stats.wilcoxon(differences, zero_method="wilcox").pvalue)


def holm(p_values: list[float | None]) -> list[float | None]:
    """Holm's step-down adjustment of the p-values of a family of tests (None: not tested, left out)."""
    tested = sorted((p, i) for i, p in enumerate(p_values) if p is not None)
    adjusted: list[float | None] = [None] * len(p_values)
    running = 0.0
    for rank, (p, i) in enumerate(tested):
        running = max(running, min(1.0, (len(tested) - rank) * p))
        adjusted[i] = running
    return adjusted


def detectable_difference(sd: float, n: int, paired_design: bool) -> float | None:
    """The smallest true difference a two-sided t-test at ALPHA detects with probability POWER, for `n` seeds per
    arm and a per-seed spread `sd` (of the differences when paired, of each arm's scores when not)."""
    if n < 2 or not sd or not math.isfinite(sd):
        return None
    low, high = 0.0, 1.0
    while power(high, sd, n, paired_design) < POWER and high < 1e6:
        high *= 2
    for _ in range(60):
        middle = (low + high) / 2
        low, high = (middle, high) if power(middle, sd, n, paired_design) < POWER else (low, middle)
    return high


def power(delta: float, sd: float, n: int, paired_design: bool) -> float:
    """The probability that a two-sided t-test at ALPHA finds a true difference `delta` (noncentral t)."""
    from scipy import stats

    df = n - 1 if paired_design else 2 * n - 2
    error = sd / math.sqrt(n) if paired_design else sd * math.sqrt(2 / n)
    critical = stats.t.ppf(1 - ALPHA / 2, df)
    shift = abs(delta) / error
    return float(stats.nct.sf(critical, df, shift) + stats.nct.cdf(-critical, df, shift))


def seeds_needed(delta: float, sd: float, paired_design: bool, limit: int = 1000) -> int | None:
    """How many seeds per arm would detect `delta` with probability POWER (None: none up to `limit`)."""
    if not delta or not sd:
        return None
    for n in range(2, limit + 1):
        if power(delta, sd, n, paired_design) >= POWER:
            return n
    return None


def design_power(base: list[float], other: list[float], paired_design: bool) -> dict:
    """From the observed spread: the smallest detectable difference, and the seeds that would detect the observed
    one."""
    if paired_design:
        differences = [y - x for x, y in zip(base, other, strict=True)]
        sd = statistics.stdev(differences) if len(differences) > 1 else None
        n = len(differences)
    else:
        spreads = [statistics.variance(v) for v in (base, other) if len(v) > 1]
        sd = math.sqrt(statistics.fmean(spreads)) if spreads else None
        n = min(len(base), len(other))
    delta = statistics.fmean(other) - statistics.fmean(base)
    return {
        "sd": sd,
        "detectable": detectable_difference(sd, n, paired_design) if sd else None,
        "seeds_needed": seeds_needed(delta, sd, paired_design) if sd else None,
    }


# --- over test examples ---------------------------------------------------------------------------------------


def single_label_scores(gold: np.ndarray, predicted: np.ndarray, classes: int) -> dict[str, np.ndarray]:
    """Accuracy, macro-F1 and micro-F1 of every row of resampled (gold, predicted) label ids, as scikit-learn
    computes them (macro over the classes present in gold or prediction, zero_division=0)."""
    rows, n = gold.shape
    base = np.arange(rows)[:, None] * classes
    correct = gold == predicted
    tp = np.bincount((base + gold).ravel(), weights=correct.ravel(), minlength=rows * classes).reshape(rows, classes)
    gold_count = np.bincount((base + gold).ravel(), minlength=rows * classes).reshape(rows, classes)
    predicted_count = np.bincount((base + predicted).ravel(), minlength=rows * classes).reshape(rows, classes)
    denominator = gold_count + predicted_count
    present = denominator > 0
    f1 = np.divide(2 * tp, denominator, out=np.zeros_like(tp), where=present)
    accuracy = correct.mean(1)
    return {"accuracy": accuracy, "macro_f1": f1.sum(1) / present.sum(1), "micro_f1": accuracy}


def bootstrap_difference(task_type: str, gold: list, base: list[list], other: list[list], metrics: list[str]):
    """{metric: {"low", "high", "resamples"}}: the 95% interval of the difference (other - base) in the seed-averaged
    metric, resampling the test examples (the same resample for both runs and every seed) `RESAMPLES` times, seeded.

    `base` and `other` hold each seed's predictions (labels) of the examples of `gold`. Single-label metrics are
    computed for all resamples at once; those of other tasks by `scoring.score`, resample by resample."""
    from .scoring import score

    resamples = np.random.default_rng(0).integers(0, len(gold), size=(RESAMPLES, len(gold)))
    if task_type == "single_label":
        names = {label: i for i, label in enumerate(sorted({*gold, *(p for run in base + other for p in run)}))}
        gold_ids = np.array([names[label] for label in gold])[resamples]

        def seed_average(runs):
            ids = [np.array([names[p] for p in run])[resamples] for run in runs]
            scores = [single_label_scores(gold_ids, predicted, len(names)) for predicted in ids]
            return {m: np.mean([s[m] for s in scores], axis=0) for m in metrics}

    else:

        def seed_average(runs):
            scores = [[score(task_type, [gold[i] for i in rows], [run[i] for i in rows]) for rows in resamples]
                      for run in runs]  # fmt: skip
            return {m: np.mean([[r[m] for r in seed] for seed in scores], axis=0) for m in metrics}

    ours, theirs = seed_average(base), seed_average(other)
    out = {}
    for m in metrics:
        low, high = np.quantile(theirs[m] - ours[m], [ALPHA / 2, 1 - ALPHA / 2])
        out[m] = {"low": float(low), "high": float(high), "resamples": RESAMPLES}
    return out
