"""What each stage leaves behind, as typed records: one dataclass per output file, with `save` and `load`.

The report, the model cards and `dontstop run` read these records, never raw JSON, and every metric name that is
taken apart (the Trainer's `eval_<set>_<metric>` keys) is taken apart here. A record saves as the JSON it always
was, so output directories of earlier versions load; a file that is not such a record is one `UsageError` naming
the file and the key. A record also reads like that JSON (`metrics["after"]`), for scripts written against the files.

The package: `base` (the `Record` machinery and the metric keys), `stages` (one record per stage output) and
`experiment` (what `dontstop run` keeps); every name is importable from `dontstop.records`.
"""

from .base import EVAL_METRICS, Record, eval_key, eval_name, eval_values
from .experiment import ArmSummary, BudgetPoint, Compute, ExperimentSummary, HeldOutChange, SizePoint, StageSummary
from .stages import (
    AugmentedData,
    CorpusLoss,
    FinetuneResults,
    LabelIssues,
    LearningRateSweep,
    LMEvaluation,
    MinedWords,
    MultiTaskResults,
    PreparedData,
    PretrainMetrics,
    SeedResult,
    Selection,
    Similarity,
    Snapshot,
)

__all__ = [
    "ArmSummary",
    "AugmentedData",
    "BudgetPoint",
    "Compute",
    "CorpusLoss",
    "EVAL_METRICS",
    "ExperimentSummary",
    "FinetuneResults",
    "HeldOutChange",
    "LMEvaluation",
    "LabelIssues",
    "LearningRateSweep",
    "MinedWords",
    "MultiTaskResults",
    "PreparedData",
    "PretrainMetrics",
    "Record",
    "SeedResult",
    "Selection",
    "Similarity",
    "SizePoint",
    "Snapshot",
    "StageSummary",
    "eval_key",
    "eval_name",
    "eval_values",
]
