"""The experiment YAML as dataclasses, every key and value checked, each error naming the file, the line and the key.

Paths in the YAML (corpora, task files, `model:` when it names a local directory, and every stage option that is a
path) are relative to the YAML file's directory; `output_dir` too.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field

import yaml

from ..errors import UsageError

TOP_LEVEL_KEYS = {
    "name": "the experiment's name (default: the YAML file's name)",
    "output_dir": "where stages and the report go (default: runs/NAME, relative to the working directory)",
    "model": "the checkpoint every arm starts from (hub id, directory, or pkg:NAME)",
    "base": "optional: pretrain the starting model first (pretrain options, e.g. config_name, on data: general)",
    "seed": "seed of the held-out splits, the masks and the selection (fine-tuning seeds are under finetune)",
    "corpora": "domain: and general: corpus files (one path or a list)",
    "task": "train:, dev:, test: files and the column options of dontstop finetune",
    "held_out": "held-out documents and the masked-LM evaluation of every arm's final checkpoint",
    "inspect": "dontstop inspect options for the vocabulary-overlap heatmap (false: skip)",
    "mine": "optional: dontstop mine options; its user_dict.txt feeds every pretraining stage's segmenter",
    "pretrain": "dontstop pretrain options for every pretraining stage (masking, batch size, ...)",
    "budgets": "dapt: and tapt: pretrain options for the two kinds of stage (max_steps, num_train_epochs, ...)",
    "select": "dontstop select options for every selection stage",
    "finetune": "dontstop finetune options for every arm (seeds, train_limit, num_train_epochs, ...)",
    "clean": "optional: dontstop clean options; arms fine-tune on its cleaned training file (an arm's clean: false "
    "keeps the original)",
    "report": "split: (test or dev) and metric: of the headline table",
    "arms": "the arms, in report order: names of built-in arms or mappings (see the module docstring)",
}
BUILTIN_ARMS = {
    "baseline": "the model as given, fine-tuned",
    "dapt": "continued pretraining on the domain corpus",
    "tapt": "continued pretraining on the task's own (unlabeled) training text",
    "dapt+tapt": "DAPT, then TAPT",
    "knn-tapt": "TAPT on the task text plus the k domain documents nearest each task example",
    "random-tapt": "TAPT on the task text plus as many random domain documents as kNN-TAPT selects",
    "curated-tapt": "TAPT on the task text plus curated task-related text",
    "pcp": "prompt-based continued pretraining: TAPT on the task text in the arm's finetune prompt: template",
}
ARM_KEYS = (
    "name",
    "arm",
    "chain",
    "pretrain",
    "finetune",
    "weights",
    "description",
    "check",
    "checkpoints",
    "k",
    "size",
    "curated",
    "strategy",
    "clean",
)
SELECT_KEYS = ("k", "size", "curated", "strategy")  # an arm's own selection options
WEIGHTS = ("raw", "ema", "swa", "merged")
# An arm that checks the design rather than a method: `identity` must score exactly as the baseline, seed for seed.
CHECKS = ("identity",)


@dataclass
class HeldOut:
    documents: int = 100  # held out of each corpus, never trained on
    eval_samples: int = 64  # blocks each pretraining stage evaluates on (loss curves)
    eval_blocks: int = 64  # blocks of each held-out set in the final masked-LM evaluation
    max_seq_length: int = 128
    batch_size: int = 16
    head_warmup_steps: int = 100  # for a checkpoint without an MLM head (see dontstop lm-eval)


@dataclass
class Task:
    train: str
    dev: str
    test: str | None = None
    columns: dict = field(default_factory=dict)  # text_column, label_column, ...: dontstop finetune options


@dataclass
class Arm:
    name: str
    kind: str | None  # a built-in arm's type, or None for a chain of its own
    chain: list | None  # [{pretrain: {...}} | {select: {...}}], when given
    pretrain: dict
    finetune: dict
    select: dict
    weights: str
    description: str | None
    where: str  # "arms[2] (dapt-ema)", for errors
    checkpoints: list[float] = field(default_factory=list)  # fractions of the last pretraining stage: a budget curve
    clean: bool = True  # fine-tune on the clean stage's cleaned training file (when the experiment has one)
    check: str | None = None  # a design check (CHECKS), kept out of the verdict and the correction


@dataclass
class Experiment:
    """The YAML, checked. Stage options are still mappings: the planner checks them against each stage."""

    path: str
    name: str
    output_dir: str
    model: str
    base: dict | None
    seed: int
    domain: list[str]
    general: list[str]
    task: Task
    held_out: HeldOut
    inspect: dict | None  # None: no inspection
    mine: dict | None
    pretrain: dict
    budgets: dict[str, dict]
    select: dict
    finetune: dict
    clean: dict | None  # None: the arms train on the task's training file as it is
    train_limits: list[str]  # a label-size curve: "all", "N" (examples) or "N/class"
    report: dict
    arms: list[Arm]
    settings: dict  # the YAML as read, for the report


class Reader:
    """Reads one YAML file: values, and the line of every key, for errors that point at it."""

    def __init__(self, path: str):
        from ..config import read_yaml_mapping

        self.path = path
        self.here = os.path.dirname(os.path.abspath(path))
        self.data = read_yaml_mapping(path, what="settings (model:, corpora:, task:, arms:, ...)")
        self.lines: dict[str, int] = {}
        with open(path, encoding="utf-8") as f:
            self._index(yaml.compose(f), "")

    def _index(self, node, prefix: str) -> None:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                where = f"{prefix}.{key.value}" if prefix else str(key.value)
                self.lines.setdefault(where, key.start_mark.line + 1)
                self._index(value, where)
        elif isinstance(node, yaml.SequenceNode):
            for i, value in enumerate(node.value):
                where = f"{prefix}[{i}]"
                self.lines.setdefault(where, value.start_mark.line + 1)
                self._index(value, where)

    def fail(self, where: str, message: str) -> UsageError:
        """`FILE:LINE: where: message`, the line of `where` (or of the nearest key above it)."""
        key = where.split(" ")[0]
        while key and key not in self.lines:
            key = key.rsplit(".", 1)[0] if "." in key else (key.rsplit("[", 1)[0] if "[" in key else "")
        line = f":{self.lines[key]}" if key in self.lines else ""
        return UsageError(f"{self.path}{line}: {where}: {message}")

    def section(self, key: str, value=None) -> dict:
        value = self.data.get(key) if value is None else value
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.fail(key, f"expected a mapping of options, got {type(value).__name__}")
        return dict(value)

    def path_of(self, value, where: str) -> str:
        """A file named in the YAML: relative to the YAML's directory; it must exist."""
        if not isinstance(value, str) or not value:
            raise self.fail(where, f"expected a file path, got {value!r}")
        path = self.relative(value)
        if not os.path.exists(path):
            raise self.fail(where, f"{value}: no such file or directory")
        return path

    def paths_of(self, value, where: str) -> list[str]:
        values = value if isinstance(value, list) else [value]
        return [self.path_of(v, f"{where}[{i}]" if isinstance(value, list) else where) for i, v in enumerate(values)]

    def relative(self, value: str) -> str:
        return value if os.path.isabs(value) else os.path.normpath(os.path.join(self.here, value))

    def model_of(self, value: str) -> str:
        """A model: a local directory relative to the YAML if there is one, else a hub id or pkg:NAME as given."""
        if value.startswith("pkg:"):
            return value
        local = self.relative(value)
        return local if os.path.exists(local) else value


def read_experiment(path: str, output_dir: str | None = None, reader: Reader | None = None) -> Experiment:
    reader = reader or Reader(path)
    data = reader.data
    unknown = sorted(set(data) - set(TOP_LEVEL_KEYS))
    if unknown:
        raise reader.fail(unknown[0], f"unknown key(s) {', '.join(unknown)} (known: {', '.join(TOP_LEVEL_KEYS)})")
    if not data.get("model") and not data.get("base"):
        raise reader.fail("model", "required (the checkpoint every arm starts from)")
    name = str(data.get("name") or os.path.splitext(os.path.basename(path))[0])
    where_to = output_dir or (reader.relative(data["output_dir"]) if data.get("output_dir") else None)
    corpora = reader.section("corpora")
    unknown = sorted(set(corpora) - {"domain", "general"})
    if unknown:
        raise reader.fail("corpora", f"unknown corpus name(s) {', '.join(unknown)} (domain, general)")
    if "domain" not in corpora:
        raise reader.fail("corpora", "domain: is required")
    inspect = data.get("inspect", {})
    return Experiment(
        path=path,
        name=name,
        output_dir=where_to or os.path.join("runs", name),
        model=reader.model_of(str(data["model"])) if data.get("model") else "",
        base=reader.section("base") if data.get("base") else None,
        seed=integer(reader, data.get("seed", 42), "seed"),
        domain=reader.paths_of(corpora["domain"], "corpora.domain"),
        general=reader.paths_of(corpora["general"], "corpora.general") if corpora.get("general") else [],
        task=read_task(reader),
        held_out=read_held_out(reader),
        inspect=None if inspect is False else reader.section("inspect", inspect or {}),
        mine=reader.section("mine") if data.get("mine") is not None else None,
        pretrain=reader.section("pretrain"),
        budgets=read_budgets(reader),
        select=reader.section("select"),
        finetune={k: v for k, v in reader.section("finetune").items() if k != "train_limits"},
        clean=read_clean(reader),
        train_limits=read_train_limits(reader),
        report=reader.section("report"),
        arms=read_arms(reader),
        settings=dict(data),
    )


def integer(reader: Reader, value, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise reader.fail(where, f"expected a whole number, got {value!r}")
    return value


def read_task(reader: Reader) -> Task:
    task = reader.section("task")
    for split in ("train", "dev"):
        if split not in task:
            raise reader.fail("task", f"{split}: is required")
    files = {split: reader.path_of(task.pop(split), f"task.{split}") for split in ("train", "dev")}
    test = reader.path_of(task.pop("test"), "task.test") if "test" in task else None
    return Task(files["train"], files["dev"], test, task)


def read_clean(reader: Reader) -> dict | None:
    """clean: {options} (or true, for the defaults): a clean stage; absent or false: none."""
    value = reader.data.get("clean")
    if value is None or value is False:
        return None
    return {} if value is True else reader.section("clean")


def read_held_out(reader: Reader) -> HeldOut:
    given = reader.section("held_out")
    known = [f.name for f in dataclasses.fields(HeldOut)]
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise reader.fail("held_out", f"unknown option(s) {', '.join(unknown)} (known: {', '.join(known)})")
    return HeldOut(**{k: integer(reader, v, f"held_out.{k}") for k, v in given.items()})


def read_budgets(reader: Reader) -> dict[str, dict]:
    budgets = reader.section("budgets")
    for name, budget in budgets.items():
        if not isinstance(budget, dict):
            raise reader.fail(f"budgets.{name}", "expected a mapping of pretrain options")
    return budgets


def read_train_limits(reader: Reader) -> list[str]:
    """finetune.train_limits: [8/class, 32/class, all] or [100, 400, all]: a label-size curve."""
    limits = reader.section("finetune").get("train_limits") or []
    where = "finetune.train_limits"
    if not isinstance(limits, list):
        raise reader.fail(where, "expected a list of sizes: N (examples), N/class or all")
    out = []
    for value in limits:
        text = str(value).strip()
        number = text.removesuffix("/class")
        if text != "all" and not (number.isdigit() and int(number) > 0):
            raise reader.fail(where, f"{value!r} is not a size: N (examples), N/class or all")
        out.append(text)
    if len(set(out)) != len(out):
        raise reader.fail(where, f"sizes repeat: {', '.join(out)}")
    return out


def read_checkpoints(reader: Reader, value, where: str) -> list[float]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v <= 1 for v in value
    ):
        raise reader.fail(where, f"checkpoints: expected fractions of the pretraining budget in (0, 1], got {value!r}")
    return sorted(set(float(v) for v in value))


def read_arms(reader: Reader) -> list[Arm]:
    specs = reader.data.get("arms")
    if not isinstance(specs, list) or not specs:
        raise reader.fail("arms", "expected a list of arms (e.g. [baseline, dapt, tapt, dapt+tapt, knn-tapt])")
    arms = [read_arm(reader, spec, i) for i, spec in enumerate(specs)]
    names = [arm.name for arm in arms]
    if len(set(names)) != len(names):
        raise reader.fail("arms", f"arm names must be distinct (got {', '.join(names)})")
    return arms


def read_arm(reader: Reader, spec, index: int) -> Arm:
    where = f"arms[{index}]"
    spec = {"name": spec} if isinstance(spec, str) else spec
    if not isinstance(spec, dict) or not spec.get("name"):
        raise reader.fail(where, "expected an arm name or a mapping with name:")
    name = str(spec["name"])
    where = f"arms[{index}] ({name})"
    unknown = sorted(set(spec) - set(ARM_KEYS))
    if unknown:
        raise reader.fail(where, f"unknown key(s) {', '.join(unknown)}")
    kind = spec.get("arm") or (name if name in BUILTIN_ARMS else None)
    if kind is None and spec.get("chain") is None:
        raise reader.fail(where, f"not a built-in arm ({', '.join(BUILTIN_ARMS)}): give arm: TYPE or chain:")
    if kind is not None and kind not in BUILTIN_ARMS:
        raise reader.fail(where, f"unknown arm type {kind!r} (built-in: {', '.join(BUILTIN_ARMS)})")
    weights = spec.get("weights", "raw")
    if weights not in WEIGHTS:
        raise reader.fail(where, f"weights: {weights!r} is not one of {', '.join(WEIGHTS)}")
    select = {k: spec[k] for k in SELECT_KEYS if k in spec}
    if spec.get("chain") is not None and select:
        raise reader.fail(where, "k/size/curated/strategy belong inside the chain's select: stage")
    if spec.get("check") is not None and spec["check"] not in CHECKS:
        raise reader.fail(where, f"check: {spec['check']!r} is not one of {', '.join(CHECKS)}")
    if kind == "curated-tapt" and spec.get("chain") is None and not select.get("curated"):
        raise reader.fail(where, "curated-tapt needs curated: FILE (task-related text you gathered)")
    clean = spec.get("clean", True)
    if not isinstance(clean, bool):
        raise reader.fail(where, f"clean: expected true or false, got {clean!r}")
    if "clean" in spec and clean and read_clean(reader) is None:
        raise reader.fail(where, "clean: true needs a clean: section at the top of the file")
    return Arm(
        name=name,
        kind=kind,
        chain=spec.get("chain"),
        pretrain=reader.section(f"{where}.pretrain", spec.get("pretrain") or {}),
        finetune=reader.section(f"{where}.finetune", spec.get("finetune") or {}),
        select=select,
        weights=weights,
        description=spec.get("description"),
        where=where,
        checkpoints=read_checkpoints(reader, spec.get("checkpoints"), where),
        clean=clean,
        check=spec.get("check"),
    )
