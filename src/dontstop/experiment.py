"""One experiment, one command: the base model against DAPT, TAPT, DAPT+TAPT, kNN-TAPT and any chain of stages,
each fine-tuned over seeds, then a report.

    dontstop run experiment.yaml          (no argument: the embedded demo, examples/demo.yaml)

The YAML names the model, the corpora, the task, the arms and their budgets (see examples/demo.yaml). Every stage
(prepare, inspect, mine, select, pretrain, lm-eval, finetune) writes its own directory under OUTPUT_DIR/stages/,
named after a hash of everything that determines its result: its settings, the content of its input files and the
hashes of the stages it starts from. A stage whose directory holds a finished marker with that hash is skipped, so
re-running does only what is new; changing one setting re-runs that stage and what depends on it; an interrupted
run resumes (a fine-tuning stage keeps its finished seeds, a pretraining stage its last checkpoint).
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field

from .errors import UsageError
from .outputs import write_json

logger = logging.getLogger(__name__)

# Bump when a stage's outputs change meaning: every cached stage is then re-run.
CACHE_VERSION = 1
MARKER = "dontstop_stage.json"

TOP_LEVEL_KEYS = {
    "name": "the experiment's name (default: the YAML file's name)",
    "output_dir": "where stages and the report go (default: runs/NAME), relative to the working directory",
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
    "report": "split: (test or dev) and metric: of the headline table",
    "arms": "the arms, in report order: names of built-in arms or mappings (see the module docstring)",
}
HELD_OUT_DEFAULTS = {
    "documents": 100,  # held out of each corpus, never trained on
    "eval_samples": 64,  # blocks each pretraining stage evaluates on (loss curves)
    "eval_blocks": 64,  # blocks of each held-out set in the final masked-LM evaluation
    "max_seq_length": 128,
    "batch_size": 16,
    "head_warmup_steps": 100,  # for a checkpoint without an MLM head (see dontstop inspect)
}
BUILTIN_ARMS = {
    "baseline": "the model as given, fine-tuned",
    "dapt": "continued pretraining on the domain corpus",
    "tapt": "continued pretraining on the task's own (unlabeled) training text",
    "dapt+tapt": "DAPT, then TAPT",
    "knn-tapt": "TAPT on the task text plus the k domain documents nearest each task example",
    "random-tapt": "TAPT on the task text plus as many random domain documents as kNN-TAPT selects",
    "curated-tapt": "TAPT on the task text plus curated task-related text",
}
# Options that change where or how fast a stage works, not what it produces: left out of the hash.
UNHASHED = {"data_cache_dir", "preprocessing_num_workers", "overwrite_output_dir", "resume", "resume_from_checkpoint"}


# --------------------------------------------------------------------------------------------------------------
# Stages


@dataclass(eq=False)
class Stage:
    """One unit of cached work. `options` may hold `Ref`s to other stages' outputs: they are its dependencies, and
    the hash sees their hashes."""

    kind: str
    label: str
    options: dict
    inputs: list[str] = field(default_factory=list)  # files whose content the result depends on
    units: float = 1.0  # planned work, for the time estimate (pretrain: steps; finetune: seeds x epochs)
    _key: str | None = None

    @property
    def key(self) -> str:
        if self._key is None:
            digest = hashlib.sha256()
            payload = {
                "version": CACHE_VERSION,
                "kind": self.kind,
                "options": {k: v for k, v in self.options.items() if k not in UNHASHED},
                "inputs": [file_fingerprint(path) for path in self.inputs],
            }
            digest.update(json.dumps(payload, sort_keys=True, default=ref_key).encode())
            self._key = digest.hexdigest()
        return self._key

    def directory(self, root: str) -> str:
        return os.path.join(root, "stages", f"{self.kind}-{self.label}-{self.key[:10]}")


@dataclass(frozen=True)
class Ref:
    """A path inside another stage's output directory, resolved when the stage runs."""

    stage: Stage
    path: str = ""


def ref_key(value):
    if isinstance(value, Ref):
        return f"<{value.stage.key}>/{value.path}"
    raise TypeError(f"cannot hash {type(value).__name__}")


_FINGERPRINTS: dict[tuple, str] = {}


def file_fingerprint(path: str) -> str:
    """sha256 of a file's bytes, memoised per run; for a directory (a local model), of every file's name and bytes,
    documentation (*.md) left out: a model card or a README does not change what the model computes."""
    if isinstance(path, Ref):
        return ref_key(path)
    if not os.path.exists(path):
        return f"missing:{path}"
    if os.path.isdir(path):
        files = sorted(
            os.path.relpath(os.path.join(d, f), path) for d, _, names in os.walk(path) for f in names
            if not f.endswith(".md")
        )  # fmt: skip
        listing = [(name, file_fingerprint(os.path.join(path, name))) for name in files]
        return hashlib.sha256(json.dumps(listing).encode()).hexdigest()
    stat = os.stat(path)
    memo = (os.path.abspath(path), stat.st_size, stat.st_mtime_ns)
    if memo not in _FINGERPRINTS:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
        _FINGERPRINTS[memo] = digest.hexdigest()
    return _FINGERPRINTS[memo]


@dataclass
class Arm:
    name: str
    description: str
    chain: list[Stage]  # the pretraining chain (select and pretrain stages), in order
    weights: str  # raw, ema, swa or merged: which of the last pretrain stage's saved weights
    finetune: Stage | None = None
    lm_eval: Stage | None = None


@dataclass
class Experiment:
    name: str
    config_path: str | None
    output_dir: str
    settings: dict
    stages: list[Stage]  # every stage, in an order that runs parents first
    arms: list[Arm]
    inspect: Stage | None
    base_eval: Stage | None


# --------------------------------------------------------------------------------------------------------------
# Reading the YAML


def read_yaml(path: str) -> dict:
    from .cli import read_yaml_mapping

    config = read_yaml_mapping(path, what="settings (model:, corpora:, task:, arms:, ...)")
    unknown = sorted(set(config) - set(TOP_LEVEL_KEYS))
    if unknown:
        raise UsageError(f"{path}: unknown key(s) {', '.join(unknown)} (known: {', '.join(TOP_LEVEL_KEYS)})")
    return config


class Planner:
    """Turns the YAML into stages. Every check on the YAML happens here, before anything runs."""

    def __init__(self, config: dict, config_path: str, output_dir: str | None = None):
        self.config = config
        self.where = config_path
        self.here = os.path.dirname(os.path.abspath(config_path))
        self.name = str(config.get("name") or os.path.splitext(os.path.basename(config_path))[0])
        self.output_dir = output_dir or config.get("output_dir") or os.path.join("runs", self.name)
        self.seed = int(config.get("seed", 42))
        self.stages: list[Stage] = []
        self._by_key: dict[str, Stage] = {}

    # -- helpers --

    def fail(self, where: str, message: str) -> UsageError:
        return UsageError(f"{self.where}: {where}: {message}")

    def section(self, key: str, default=None) -> dict:
        value = self.config.get(key, default if default is not None else {})
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.fail(key, f"expected a mapping of options, got {type(value).__name__}")
        return dict(value)

    def path(self, value: str, where: str) -> str:
        """A file named in the YAML: relative to the YAML's directory; it must exist."""
        if not isinstance(value, str) or not value:
            raise self.fail(where, f"expected a file path, got {value!r}")
        path = value if os.path.isabs(value) else os.path.normpath(os.path.join(self.here, value))
        if not os.path.exists(path):
            raise self.fail(where, f"{value}: no such file or directory")
        return path

    def paths(self, value, where: str) -> list[str]:
        values = value if isinstance(value, list) else [value]
        return [self.path(v, where) for v in values]

    def add(self, stage: Stage) -> Stage:
        """The stage, or the identical one planned already (DAPT is shared by dapt and dapt+tapt)."""
        known = self._by_key.get(stage.key)
        if known is not None:
            return known
        self._by_key[stage.key] = stage
        self.stages.append(stage)
        return stage

    def check_options(self, kind: str, options: dict, where: str) -> None:
        """Option names must be the stage's own (the CLI's names); values are checked when parsed."""
        valid = {action.dest for action in stage_parser(kind)._actions}
        unknown = sorted(set(options) - valid - {"data", "budget", "weights"})
        if unknown:
            raise self.fail(where, f"unknown dontstop {kind} option(s) {', '.join(unknown)}")

    # -- the plan --

    def plan(self) -> Experiment:
        config = self.config
        if not config.get("model") and not config.get("base"):
            raise self.fail("model", "required (the checkpoint every arm starts from)")
        corpora = self.section("corpora")
        unknown = sorted(set(corpora) - {"domain", "general"})
        if unknown:
            raise self.fail("corpora", f"unknown corpus name(s) {', '.join(unknown)} (domain, general)")
        if "domain" not in corpora:
            raise self.fail("corpora", "domain: is required")
        task = self.section("task")
        for split in ("train", "dev"):
            if split not in task:
                raise self.fail("task", f"{split}: is required")
        self.task = {split: self.path(task.pop(split), f"task.{split}") for split in ("train", "dev")}
        if "test" in task:
            self.task["test"] = self.path(task.pop("test"), "task.test")
        self.task_columns = task  # text_column, label_column, ...: finetune options
        self.check_options("finetune", task, "task")
        held = {**HELD_OUT_DEFAULTS, **self.section("held_out")}
        unknown = sorted(set(held) - set(HELD_OUT_DEFAULTS))
        if unknown:
            raise self.fail(
                "held_out", f"unknown option(s) {', '.join(unknown)} (known: {', '.join(HELD_OUT_DEFAULTS)})"
            )
        self.held = held

        domain = self.paths(corpora["domain"], "corpora.domain")
        general = self.paths(corpora["general"], "corpora.general") if corpora.get("general") else []
        self.has_general = bool(general)
        self.prepare = self.add(
            Stage(
                "prepare",
                "data",
                {
                    "domain": domain,
                    "general": general,
                    "task_train": self.task["train"],
                    "task_dev": self.task["dev"],
                    "text_column": task.get("text_column", "text"),
                    "held_out_documents": int(held["documents"]),
                    "seed": self.seed,
                },
                inputs=[*domain, *general, self.task["train"], self.task["dev"]],
            )
        )
        self.pretrain_defaults = self.section("pretrain")
        self.check_options("pretrain", self.pretrain_defaults, "pretrain")
        self.budgets = self.section("budgets")
        for name, budget in self.budgets.items():
            if not isinstance(budget, dict):
                raise self.fail(f"budgets.{name}", "expected a mapping of pretrain options")
            self.check_options("pretrain", budget, f"budgets.{name}")
        self.select_defaults = self.section("select")
        self.check_options("select", self.select_defaults, "select")
        self.finetune_defaults = self.section("finetune")
        self.check_options("finetune", self.finetune_defaults, "finetune")

        self.mine = None
        if config.get("mine") is not None:
            options = {"corpus": [(Ref(self.prepare, "domain_train.jsonl"), "domain")]}
            if self.has_general:
                options["against"] = [(Ref(self.prepare, "general_train.jsonl"), "general")]
            options.update(self.section("mine"))
            self.check_options("mine", options, "mine")
            self.mine = self.add(Stage("mine", "words", options))

        inspect = None
        if config.get("inspect", {}) is not False:
            names = ["general", "domain", "task"] if self.has_general else ["domain", "task"]
            options = {
                "corpus": [(Ref(self.prepare, f"{name}_train.jsonl"), name) for name in names],
                "max_docs": 5000,
                "seed": self.seed,
                **self.section("inspect"),
            }
            self.check_options("inspect", options, "inspect")
            inspect = self.add(Stage("inspect", "overlap", options))

        # The starting model: as given, or pretrained first (a Chinese BERT from a config, say).
        self.model: Stage | str = config.get("model") or ""
        if config.get("base"):
            base = self.section("base")
            self.model = self.pretrain_stage(None, base, data=base.pop("data", "general"), parent=None, where="base")
        base_eval = self.lm_eval_stage(self.model, "raw", "base")

        arms_config = config.get("arms")
        if not isinstance(arms_config, list) or not arms_config:
            raise self.fail("arms", "expected a list of arms (e.g. [baseline, dapt, tapt, dapt+tapt, knn-tapt])")
        arms = [self.arm(spec, i) for i, spec in enumerate(arms_config)]
        names = [arm.name for arm in arms]
        if len(set(names)) != len(names):
            raise self.fail("arms", f"arm names must be distinct (got {', '.join(names)})")
        settings = copy.deepcopy(config)
        settings.update(name=self.name, output_dir=self.output_dir, held_out=held)
        return Experiment(self.name, self.where, self.output_dir, settings, self.stages, arms, inspect, base_eval)

    def arm(self, spec, index: int) -> Arm:
        where = f"arms[{index}]"
        if isinstance(spec, str):
            spec = {"name": spec}
        if not isinstance(spec, dict) or not spec.get("name"):
            raise self.fail(where, "expected an arm name or a mapping with name:")
        spec = dict(spec)
        name = str(spec.pop("name"))
        where = f"arms[{index}] ({name})"
        kind = spec.pop("arm", None) or (name if name in BUILTIN_ARMS else None)
        chain_spec = spec.pop("chain", None)
        if kind is None and chain_spec is None:
            raise self.fail(where, f"not a built-in arm ({', '.join(BUILTIN_ARMS)}): give arm: TYPE or chain:")
        if kind is not None and kind not in BUILTIN_ARMS:
            raise self.fail(where, f"unknown arm type {kind!r} (built-in: {', '.join(BUILTIN_ARMS)})")
        pretrain_overrides = spec.pop("pretrain", None) or {}
        finetune_overrides = spec.pop("finetune", None) or {}
        select_overrides = {k: spec.pop(k) for k in ("k", "size", "curated", "strategy") if k in spec}
        weights = spec.pop("weights", "raw")
        description = spec.pop("description", None)
        if spec:
            raise self.fail(where, f"unknown key(s) {', '.join(sorted(spec))}")
        self.check_options("pretrain", pretrain_overrides, f"{where}.pretrain")
        self.check_options("finetune", finetune_overrides, f"{where}.finetune")
        if weights not in ("raw", "ema", "swa", "merged"):
            raise self.fail(where, f"weights: {weights!r} is not one of raw, ema, swa, merged")
        if chain_spec is None:
            if kind == "curated-tapt" and not select_overrides.get("curated"):
                raise self.fail(where, "curated-tapt needs curated: FILE (task-related text you gathered)")
            chain_spec = builtin_chain(kind, select_overrides)
        elif select_overrides:
            raise self.fail(where, "k/size/curated/strategy belong inside the chain's select: stage")
        if not isinstance(chain_spec, list):
            raise self.fail(where, "chain: expected a list of {pretrain: {...}} / {select: {...}} stages")

        chain: list[Stage] = []
        model: Stage | str = self.model
        selected: Stage | None = None
        for j, step in enumerate(chain_spec):
            step_where = f"{where}.chain[{j}]"
            if not isinstance(step, dict) or len(step) != 1 or next(iter(step)) not in ("pretrain", "select"):
                raise self.fail(step_where, "expected {pretrain: {...}} or {select: {...}}")
            (kind_j, options), = step.items()  # fmt: skip
            options = dict(options or {})
            if kind_j == "select":
                selected = self.select_stage(options, step_where)
                chain.append(selected)
            else:
                data = options.pop("data", "selected" if selected is not None else "domain")
                options = {**options, **pretrain_overrides}
                model = self.pretrain_stage(name, options, data, model, step_where, selected)
                chain.append(model)
        if weights != "raw" and not isinstance(model, Stage):
            raise self.fail(where, f"weights: {weights} needs a pretraining stage")
        final = model if weights == "raw" or not isinstance(model, Stage) else Ref(model, weights)
        if description is None:
            changes = [f"{k}={v}" for k, v in {**pretrain_overrides, **finetune_overrides}.items()]
            changes += [f"the {weights} weights"] if weights != "raw" else []
            description = BUILTIN_ARMS.get(kind) or describe_chain(chain)
            description += f" ({', '.join(changes)})" if changes else ""
        arm = Arm(name, description, chain, weights)
        arm.finetune = self.finetune_stage(name, final, finetune_overrides)
        arm.lm_eval = self.lm_eval_stage(model, weights, name) if isinstance(model, Stage) else None
        return arm

    def select_stage(self, options: dict, where: str) -> Stage:
        options = {**self.select_defaults, **options}
        curated = options.get("curated")
        if curated is not None:
            options["curated"] = self.paths(curated, f"{where}.curated")
        self.check_options("select", options, where)
        resolved = {
            "task_file": self.task["train"],
            "validation_file": self.task["dev"],
            "pool": [(Ref(self.prepare, "domain_train.jsonl"), "domain")],
            "seed": self.seed,
            **options,
        }
        if "test" in self.task:
            resolved.setdefault("test_file", self.task["test"])
        if "text_column" in self.task_columns:
            resolved.setdefault("text_column", self.task_columns["text_column"])
        strategy = resolved.get("strategy", "knn")
        label = f"{'curated' if strategy == 'random' and resolved.get('size') == 0 else strategy}-select"
        inputs = [*self.task.values(), *(options.get("curated") or [])]
        return self.add(Stage("select", label, resolved, inputs))

    def pretrain_stage(
        self, arm: str | None, options: dict, data, parent, where: str, selected: Stage | None = None
    ) -> Stage:
        """A pretraining stage of `arm` (None: the base stage): the defaults, the budget (dapt/tapt) and the stage's
        own options, in that order."""
        options = dict(options)
        # The base stage takes only what base: says; an arm's stage the budget its data implies, unless it names one.
        default_budget = None if arm is None else {"domain": "dapt", "general": "dapt"}.get(data, "tapt")
        budget_name = options.pop("budget", None) or default_budget
        budget = self.budgets.get(budget_name, {}) if budget_name else {}
        self.check_options("pretrain", options, where)
        resolved = {**self.pretrain_defaults, **budget, **options}
        inputs = []
        if data in ("domain", "general", "task"):
            if data == "general" and not self.has_general:
                raise self.fail(where, "data: general needs corpora.general")
            train = [Ref(self.prepare, f"{data}_train.jsonl")]
        elif data == "selected":
            if selected is None:
                raise self.fail(where, "data: selected needs a select: stage before it")
            train = [Ref(selected, "selected.jsonl")]
        else:
            train = self.paths(data, f"{where}.data")
            inputs += train
        resolved["train_file"] = train
        eval_files = [(Ref(self.prepare, "domain_heldout.jsonl"), "domain")]
        if self.has_general:
            eval_files.append((Ref(self.prepare, "general_heldout.jsonl"), "general"))
        resolved.setdefault("eval_file", eval_files)
        resolved.setdefault("validation_split_percentage", 0)
        resolved.setdefault("max_eval_samples", int(self.held["eval_samples"]))
        resolved.setdefault("seed", self.seed)
        resolved.setdefault("save_strategy", "no")
        resolved.setdefault("include_num_input_tokens_seen", True)  # logs tokens seen, for the compute table
        if resolved.get("replay_ratio") and not resolved.get("replay_file"):
            if not self.has_general:
                raise self.fail(where, "replay_ratio needs corpora.general (or replay_file)")
            resolved["replay_file"] = Ref(self.prepare, "general_train.jsonl")
        if self.mine is not None:
            resolved.setdefault("user_dict", [Ref(self.mine, "user_dict.txt")])
        for key in ("config_name", "tokenizer_name", "lexicon", "user_dict", "replay_file"):
            value = resolved.get(key)
            if (
                isinstance(value, str)
                and not value.startswith("pkg:")
                and os.path.exists(os.path.join(self.here, value))
            ):
                resolved[key] = os.path.normpath(os.path.join(self.here, value))
            if key in ("lexicon", "user_dict") and isinstance(value, list):
                resolved[key] = [self.path(v, f"{where}.{key}") if isinstance(v, str) else v for v in value]
        inputs += [v for k in ("config_name", "tokenizer_name", "replay_file") for v in [resolved.get(k)]
                   if isinstance(v, str) and os.path.exists(v)]  # fmt: skip
        inputs += [v for v in resolved.get("lexicon") or [] if isinstance(v, str)]
        inputs += [v for v in resolved.get("user_dict") or [] if isinstance(v, str)]
        if parent is not None:
            resolved["model_name_or_path"] = parent if isinstance(parent, str) else Ref(parent, "")
        if isinstance(parent, str) and os.path.isdir(parent):
            inputs.append(parent)
        # A readable name for the progress view: the chain so far (dapt+tapt, knn-tapt), and the arm's name when
        # the arm changed options (dapt-ema's DAPT is not dapt's).
        label = budget_name if data != "selected" else f"{selected.label.removesuffix('-select')}-{budget_name}"
        if isinstance(parent, Stage) and parent.label != "base":
            label = f"{parent.label.split('.')[0]}+{label}"
        if arm is None:
            label = "base"
        elif options:
            label = f"{label}.{arm}"
        label = arm_label(label)
        return self.add(Stage("pretrain", label, resolved, inputs, units=planned_steps(resolved)))

    def finetune_stage(self, arm: str, model, overrides: dict) -> Stage:
        options = {**self.finetune_defaults, **self.task_columns, **overrides}
        options.update(
            model_name_or_path=model if isinstance(model, (str, Ref)) else Ref(model, ""),
            train_file=self.task["train"],
            validation_file=self.task["dev"],
        )
        if "test" in self.task:
            options["test_file"] = self.task["test"]
        inputs = [*self.task.values(), *([model] if isinstance(model, str) and os.path.isdir(model) else [])]
        seeds = str(options.get("seeds", 5))
        units = (int(seeds) if seeds.isdigit() else len(seeds.split(","))) * float(options.get("num_train_epochs", 10))
        return self.add(Stage("finetune", arm_label(arm), options, inputs, units=units))

    def lm_eval_stage(self, model, weights: str, label: str) -> Stage:
        options = {
            "model": model if isinstance(model, str) else Ref(model, "" if weights == "raw" else weights),
            "data": Ref(self.prepare, ""),
            "general": self.has_general,
            **{k: self.held[k] for k in ("eval_blocks", "max_seq_length", "batch_size", "head_warmup_steps")},
            "seed": self.seed,
        }
        return self.add(Stage("lm-eval", arm_label(label), options))


def builtin_chain(kind: str, select: dict) -> list[dict]:
    dapt = {"pretrain": {"data": "domain", "budget": "dapt"}}
    tapt = {"pretrain": {"data": "task", "budget": "tapt"}}
    tapt_on_selection = {"pretrain": {"data": "selected", "budget": "tapt"}}
    return {
        "baseline": [],
        "dapt": [dapt],
        "tapt": [tapt],
        "dapt+tapt": [dapt, tapt],
        "knn-tapt": [{"select": {"strategy": "knn", **select}}, tapt_on_selection],
        "random-tapt": [{"select": {"strategy": "random", **select}}, tapt_on_selection],
        # No pool document drawn (size 0): the curated text, leakage-checked, plus the task's own text.
        "curated-tapt": [{"select": {"strategy": "random", "size": 0, **select}}, tapt_on_selection],
    }[kind]


def describe_chain(chain: list[Stage]) -> str:
    return " → ".join(f"{s.kind} {s.label}" for s in chain) or "the model as given"


def arm_label(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_+." else "_" for c in name)


def planned_steps(options: dict) -> float:
    """Optimizer steps a pretraining stage will take (roughly, for the time estimate)."""
    try:
        if int(options.get("max_steps", -1) or -1) > 0:
            return float(options["max_steps"])
        return 100.0 * float(options.get("num_train_epochs", 3))
    except (TypeError, ValueError):  # a bad value: the stage's own parser reports it before anything runs
        return 100.0


# --------------------------------------------------------------------------------------------------------------
# Running


STAGE_MODULES = {
    "pretrain": ("dontstop.pretrain", "run_pretrain"),
    "finetune": ("dontstop.finetune", "run_finetune"),
    "select": ("dontstop.select", "run_select"),
    "inspect": ("dontstop.inspect", "run_inspect"),
    "mine": ("dontstop.mine", "run_mine"),
}


def stage_parser(kind: str):
    import importlib

    return importlib.import_module(STAGE_MODULES[kind][0]).make_parser()


def render(value, root: str):
    """An option value as command-line strings, with `Ref`s resolved to paths under `root`."""
    if isinstance(value, Ref):
        return os.path.join(value.stage.directory(root), value.path) if value.path else value.stage.directory(root)
    if isinstance(value, tuple):  # (Ref or path, NAME) -> NAME=PATH
        return f"{value[1]}={render(value[0], root)}"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def to_argv(options: dict, root: str) -> list[str]:
    argv = []
    for key, value in options.items():
        if value is None:
            continue
        argv.append(f"--{key}")
        argv += [render(v, root) for v in value] if isinstance(value, list) else [render(value, root)]
    return argv


class Progress:
    """One line per stage: which arm and stage, how far the experiment is, elapsed and estimated time."""

    def __init__(self, stages: list[Stage], owners: dict[str, list[str]]):
        self.stages = stages
        self.owners = owners
        self.started = time.time()
        self.rates: dict[str, list[float]] = {}  # kind -> seconds per unit of finished stages

    def learn(self, stage: Stage, seconds: float) -> None:
        if stage.units:
            self.rates.setdefault(stage.kind, []).append(seconds / stage.units)

    def remaining(self, pending: list[Stage]) -> float | None:
        total = 0.0
        for stage in pending:
            rates = self.rates.get(stage.kind)
            if not rates:
                return None
            total += sum(rates) / len(rates) * stage.units
        return total

    def announce(self, i: int, stage: Stage, pending: list[Stage]) -> None:
        elapsed = time.time() - self.started
        left = self.remaining(pending)
        estimate = f", about {clock(left)} left" if left is not None else ""
        arms = ", ".join(self.owners.get(stage.key, [])) or "all arms"
        line = f"[{i}/{len(self.stages)}] {stage.kind} {stage.label} (for {arms}) · elapsed {clock(elapsed)}{estimate}"
        print(f"\n\033[1m▶ {line}\033[0m" if sys.stderr.isatty() else f"\n▶ {line}", file=sys.stderr, flush=True)


def clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return (
        f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
        if seconds >= 3600
        else (f"{seconds // 60}:{seconds % 60:02d}")
    )


def finished(stage: Stage, root: str) -> dict | None:
    """The stage's marker, if it finished with these exact inputs and settings."""
    marker = load_json(os.path.join(stage.directory(root), MARKER))
    return marker if marker.get("key") == stage.key else None


def run_stage(stage: Stage, root: str) -> None:
    """Run one stage into its directory; the marker is written last, so an interrupted stage is never 'done'."""
    out = stage.directory(root)
    resumable = False
    if os.path.isdir(out):
        # Ours, unfinished: a fine-tuning stage keeps its finished seeds, a pretraining stage its checkpoints.
        checkpoints = [d for d in os.listdir(out) if d.startswith("checkpoint-")]
        resumable = (stage.kind == "finetune") or (stage.kind == "pretrain" and bool(checkpoints))
        if not resumable:
            shutil.rmtree(out)
    options = dict(stage.options)
    if stage.kind in ("prepare", "lm-eval"):
        os.makedirs(out, exist_ok=True)
        (prepare_data if stage.kind == "prepare" else evaluate_lm)(options, out, root)
        return
    import importlib

    from .cli import parse_with_config

    if stage.kind == "pretrain":
        options.setdefault("data_cache_dir", os.path.join(root, "cache"))
        if resumable:
            options.update(resume_from_checkpoint="last")
    if stage.kind == "finetune" and resumable:
        options.update(resume=True, overwrite_output_dir=True)
    module_name, function = STAGE_MODULES[stage.kind]
    module = importlib.import_module(module_name)
    parsed = parse_with_config(module.make_parser(), to_argv({**options, "output_dir": out}, root))
    getattr(module, function)(*parsed)


def check_values(experiment: Experiment) -> None:
    """Parse every stage's options as its command line would, before anything runs: a bad value fails now."""
    import contextlib
    import io

    from .cli import parse_with_config

    for stage in experiment.stages:
        if stage.kind not in STAGE_MODULES:
            continue
        argv = to_argv({**stage.options, "output_dir": stage.directory(experiment.output_dir)}, experiment.output_dir)
        errors = io.StringIO()
        try:
            with contextlib.redirect_stderr(errors):
                parse_with_config(stage_parser(stage.kind), argv)
        except SystemExit:
            message = errors.getvalue().strip().splitlines()[-1] if errors.getvalue().strip() else "invalid options"
            message = message.split("error: ", 1)[-1]
            raise UsageError(f"{experiment.config_path}: {stage.kind} {stage.label}: {message}") from None


def run_experiment(experiment: Experiment, only_plan: bool = False) -> dict:
    root = experiment.output_dir
    owners: dict[str, list[str]] = {}
    for arm in experiment.arms:
        for stage in [*arm.chain, arm.finetune, arm.lm_eval]:
            if stage is not None:
                owners.setdefault(stage.key, []).append(arm.name)
    progress = Progress(experiment.stages, owners)
    done = {}
    for stage in experiment.stages:
        marker = finished(stage, root)
        if marker is not None:
            done[stage.key] = marker
            progress.learn(stage, marker.get("wall_seconds", 0.0))
    check_values(experiment)
    print_plan(experiment, done)
    if only_plan:
        return {}
    check_output_root(root)
    os.makedirs(root, exist_ok=True)
    write_json(os.path.join(root, "dontstop_config.json"), experiment.settings)
    pending = [s for s in experiment.stages if s.key not in done]
    for i, stage in enumerate(experiment.stages, start=1):
        if stage.key in done:
            continue
        pending.remove(stage)
        progress.announce(i, stage, [stage, *pending])
        started = time.time()
        run_stage(stage, root)
        seconds = round(time.time() - started, 1)
        marker = {"key": stage.key, "kind": stage.kind, "label": stage.label, "wall_seconds": seconds}
        marker["options"] = json.loads(json.dumps(stage.options, default=lambda v: render(v, root)))
        write_json(os.path.join(stage.directory(root), MARKER), marker)
        done[stage.key] = {**marker, "ran_now": True}
        progress.learn(stage, seconds)
    summary = summarize(experiment, done, time.time() - progress.started)
    summary["stages_run"] = [
        {"kind": s.kind, "label": s.label, "dir": s.directory(root), "wall_seconds": done[s.key]["wall_seconds"]}
        for s in experiment.stages
        if done[s.key].get("ran_now")
    ]
    write_json(os.path.join(root, "experiment.json"), summary)
    from .report import results_table, write_report

    written = write_report(summary, root)
    print("\n" + results_table(summary, written.get("comparison")))
    print(f"\nReport: {written.get('html', os.path.join(root, 'report.html'))} (and report.md beside it)")
    return summary


def check_output_root(root: str) -> None:
    """An experiment directory is ours to resume; any other non-empty directory is left alone."""
    if os.path.isfile(root):
        raise UsageError(f"output_dir {root} is a file")
    if os.path.isdir(root) and os.listdir(root) and not os.path.isdir(os.path.join(root, "stages")):
        raise UsageError(f"output_dir {root} is not empty and holds no experiment: choose another (--output_dir)")


def print_plan(experiment: Experiment, done: dict) -> None:
    lines = [f"Experiment {experiment.name}: {len(experiment.stages)} stages, {len(done)} done earlier"]
    for stage in experiment.stages:
        state = "cached" if stage.key in done else "to run"
        lines.append(f"  {state:7} {stage.kind:9} {stage.label:14} {stage.directory(experiment.output_dir)}")
    print("\n".join(lines), file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------------------------
# The two stages that live here: held-out splits, and the masked-LM evaluation of a final checkpoint


def prepare_data(options: dict, out: str, root: str) -> None:
    """Split each corpus into training and held-out documents (seeded), and extract the task's texts, all into
    `{"text"}` jsonl files the other stages read: held-out documents are never trained on by any arm."""
    import random

    from tqdm.auto import tqdm

    from .corpus import iter_corpus_batches

    def texts_of(paths: list[str], column: str = "text"):
        for path in paths:
            for batch in iter_corpus_batches(path, column, (), 4096, check=False):
                yield from (t for t in batch[column] if t and t.strip())

    def write(texts, name: str, held_name: str | None = None, held=frozenset(), total=None) -> dict[str, int]:
        """Write `texts` into NAME.jsonl, those numbered in `held` into HELD_NAME.jsonl instead, in one pass."""
        names = [name] + ([held_name] if held_name else [])
        counts = dict.fromkeys(names, 0)
        files = {n: open(os.path.join(out, f".{n}.tmp"), "w", encoding="utf-8") for n in names}
        try:
            for i, text in enumerate(tqdm(texts, total=total, desc=f"writing {name}", unit="doc", leave=False)):
                target = held_name if i in held else name
                files[target].write(json.dumps({"text": text}, ensure_ascii=False) + "\n")
                counts[target] += 1
        finally:
            for f in files.values():
                f.close()
        for n in names:
            os.replace(os.path.join(out, f".{n}.tmp"), os.path.join(out, f"{n}.jsonl"))
        return counts

    counts = {}
    for corpus in ("domain", "general"):
        paths = options[corpus]
        if not paths:
            continue
        total = sum(1 for _ in texts_of(paths))  # a first pass only counts, so the draw is uniform
        n = min(options["held_out_documents"], total // 10)
        held = set(random.Random(options["seed"]).sample(range(total), n))
        counts.update(write(texts_of(paths), f"{corpus}_train", f"{corpus}_heldout", held, total))
    column = options["text_column"]
    counts.update(write(texts_of([options["task_train"]], column), "task_train"))
    counts.update(write(texts_of([options["task_dev"]], column), "task_dev"))
    write_json(os.path.join(out, "counts.json"), counts)


def evaluate_lm(options: dict, out: str, root: str) -> None:
    """Masked-LM loss of one checkpoint on the held-out domain and general documents and the task's dev texts: the
    same blocks and masks for every arm (dontstop inspect's evaluation, head warm-up included for a headless one)."""
    data = render(options["data"], root)
    model = render(options["model"], root)
    if os.path.isdir(os.path.join(model, "merged")):  # an adapter stage: its merged model is the plain one
        model = os.path.join(model, "merged")
    with tempfile.TemporaryDirectory(dir=out) as scratch:
        evaluate_plain_model(options, plain_model(model, scratch), data, out, shown=model)


def plain_model(path: str, scratch: str) -> str:
    """`path`, or for an adapter directory without a merged model, that adapter merged into its base in `scratch`."""
    from .adapters import keep_output_bias, read_adapter

    adapter = read_adapter(path) if os.path.isdir(path) else None
    if adapter is None:
        return path
    from peft import PeftModel
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForMaskedLM, AutoTokenizer

    from .pretrain import infer_objective

    keep_output_bias()
    auto = (
        AutoModelForMaskedLM
        if infer_objective(AutoConfig.from_pretrained(adapter.base)) == "mlm"
        else (AutoModelForCausalLM)
    )
    merged = PeftModel.from_pretrained(auto.from_pretrained(adapter.base), path).merge_and_unload()
    merged.save_pretrained(scratch)
    AutoTokenizer.from_pretrained(path if os.path.exists(os.path.join(path, "tokenizer_config.json")) else
                                  adapter.base).save_pretrained(scratch)  # fmt: skip
    return scratch


def evaluate_plain_model(options: dict, model: str, data: str, out: str, shown: str) -> None:
    from .inspect import InspectArguments, masked_lm_losses, take_characters

    names = ["domain", *(["general"] if options["general"] else []), "task"]
    files = {"domain": "domain_heldout", "general": "general_heldout", "task": "task_dev"}
    warm_files = {"domain": "domain_train", "general": "general_train", "task": "task_train"}
    args = InspectArguments(
        eval_blocks=options["eval_blocks"],
        max_seq_length=options["max_seq_length"],
        batch_size=options["batch_size"],
        head_warmup_steps=options["head_warmup_steps"],
        seed=options["seed"],
    )
    chars = args.eval_blocks * args.max_seq_length * 6
    warm_chars = args.head_warmup_steps * args.batch_size * args.max_seq_length * 6 // len(names)
    samples = {n: take_characters(read_jsonl_texts(os.path.join(data, files[n] + ".jsonl")), chars) for n in names}
    warmup = {
        n: take_characters(read_jsonl_texts(os.path.join(data, warm_files[n] + ".jsonl")), warm_chars) for n in names
    }
    losses = masked_lm_losses(model, samples, warmup, args)
    write_json(os.path.join(out, "lm_eval.json"), {"model": shown, "losses": losses})


def read_jsonl_texts(path: str) -> list[str]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line)["text"] for line in f]


# --------------------------------------------------------------------------------------------------------------
# The summary the report is drawn from


def load_json(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError):
        return {}


def summarize(experiment: Experiment, done: dict, wall_seconds: float) -> dict:
    root = experiment.output_dir
    base_losses = load_json(os.path.join(experiment.base_eval.directory(root), "lm_eval.json")).get("losses", {})
    arms = []
    for arm in experiment.arms:
        stages = []
        compute = {"pretrain_steps": 0, "pretrain_tokens": 0, "pretrain_seconds": 0.0, "cached_seconds": 0.0}
        for stage in arm.chain:
            directory = stage.directory(root)
            marker = done.get(stage.key, {})
            seconds = float(marker.get("wall_seconds", 0.0))
            entry = {
                "name": stage.label,
                "kind": stage.kind,
                "dir": directory,
                "cached": not marker.get("ran_now", False),
                "wall_seconds": seconds,
            }
            if stage.kind == "pretrain":
                metrics = load_json(os.path.join(directory, "metrics.json"))
                history = metrics.get("history", [])
                steps = max([h.get("step", 0) for h in history] or [0])
                tokens = max([h.get("num_input_tokens_seen", 0) for h in history] or [0])
                entry.update(metrics=metrics, steps=steps, tokens=tokens)
                compute["pretrain_steps"] += steps
                compute["pretrain_tokens"] += tokens
                compute["pretrain_seconds"] += seconds
            else:
                entry["selection"] = load_json(os.path.join(directory, "selection.json"))
                compute["pretrain_seconds"] += seconds
            if entry["cached"]:
                compute["cached_seconds"] += seconds
            stages.append(entry)
        finetune_marker = done.get(arm.finetune.key, {})
        compute["finetune_seconds"] = float(finetune_marker.get("wall_seconds", 0.0))
        lm_eval = {}
        if arm.lm_eval is not None:
            after = load_json(os.path.join(arm.lm_eval.directory(root), "lm_eval.json")).get("losses", {})
            lm_eval = {
                name: {"before": base_losses.get(name, {}).get("lm_loss"), "after": values.get("lm_loss")}
                for name, values in after.items()
            }
        arms.append(
            {
                "name": arm.name,
                "description": arm.description,
                "finetune_dir": arm.finetune.directory(root),
                "stages": stages,
                "lm_eval": lm_eval,
                "compute": compute,
                "weights": arm.weights,
            }
        )
    report = experiment.settings.get("report") or {}
    has_test = "test" in (experiment.settings.get("task") or {})
    summary = {
        "name": experiment.name,
        "config_path": experiment.config_path,
        "settings": experiment.settings,
        "model": experiment.settings.get("model") or "pretrained by the base stage",
        "split": report.get("split", "test" if has_test else "dev"),
        "baseline": arms[0]["name"],
        # The experiment's compute, every stage counted once, whether it ran now or earlier; and this run's.
        "wall_seconds": round(sum(float(m.get("wall_seconds", 0.0)) for m in done.values()), 1),
        "run_seconds": round(wall_seconds, 1),
        "inspect_dir": experiment.inspect.directory(root) if experiment.inspect is not None else None,
        "base_lm_eval": base_losses,
        "arms": arms,
    }
    if report.get("metric"):
        summary["primary_metric"] = report["metric"]
    return summary


# --------------------------------------------------------------------------------------------------------------
# Command line


def find_demo() -> str:
    from .demo import DEMO, find_repository_root

    return os.path.join(find_repository_root(), DEMO)


def load_experiment(path: str, output_dir: str | None = None) -> Experiment:
    return Planner(read_yaml(path), path, output_dir).plan()


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dontstop run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=EXAMPLES,
    )
    parser.add_argument("experiment", nargs="?", help="The experiment YAML (default: the demo, examples/demo.yaml).")
    parser.add_argument("--output_dir", help="Where the stages and the report go (default: the YAML's output_dir).")
    parser.add_argument("--plan", action="store_true", help="Print the stages and which are cached; run nothing.")
    return parser


EXAMPLES = """examples:
  dontstop run                              # the embedded demo (examples/demo.yaml)
  dontstop run my-experiment.yaml --plan    # what would run, what is cached
  dontstop run my-experiment.yaml           # run (or resume) it; the report is OUTPUT_DIR/report.html
"""


def main(argv: list[str]) -> int:
    args = make_parser().parse_args(argv)
    path = args.experiment
    if path is None:
        path = find_demo()
    experiment = load_experiment(path, args.output_dir)
    run_experiment(experiment, only_plan=args.plan)
    return 0
