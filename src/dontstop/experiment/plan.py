"""From the checked YAML to stages: every arm a chain of select and pretrain stages, a fine-tuning and an LM
evaluation, shared stages planned once (DAPT serves dapt and dapt+tapt), every option checked before anything runs."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from ..config import option_fields, path_kind
from ..errors import UsageError
from ..records import LearningRateSweep
from . import schema
from .checks import check_inputs
from .stages import Named, Ref, Stage, arguments_of, local_inputs

# Keys an arm's chain steps may hold besides the stage's own options.
CHAIN_KEYS = {"data", "budget"}
# The task's column options that the clean stage reads the training file with, as fine-tuning does.
CLEAN_COLUMNS = ("text_column", "text_pair_column", "label_column", "label_type")


@dataclass
class Arm:
    name: str
    description: str
    chain: list[Stage]  # the pretraining chain (select and pretrain stages), in order
    weights: str  # raw, ema, swa or merged: which of the last pretrain stage's saved weights
    finetune: Stage
    lm_eval: Stage | None = None
    budget: list[tuple[float, Stage, Stage]] = field(default_factory=list)  # (fraction, finetune, lm-eval) < 1
    sizes: list[tuple[str, Stage]] = field(default_factory=list)  # (training size, finetune): a label-size curve
    clean: Stage | None = None  # the clean stage whose cleaned training file the arm fine-tunes on
    check: str | None = None  # a design check (schema.CHECKS), not a method


@dataclass
class Plan:
    name: str
    config_path: str | None
    output_dir: str
    settings: dict
    stages: list[Stage]  # every stage, in an order that runs parents first
    arms: list[Arm]
    inspect: Stage | None
    base_eval: Stage
    report: dict


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
        "pcp": [tapt],  # its template is the arm's finetune prompt: Planner.pcp_chain
    }[kind]


def size_options(size: str) -> dict:
    """The finetune options of one training size of a label-size curve: all, N (examples) or N/class."""
    if size == "all":
        return {"train_limit": None, "train_limit_per_class": None}
    if size.endswith("/class"):
        return {"train_limit": None, "train_limit_per_class": int(size.removesuffix("/class"))}
    return {"train_limit": int(size), "train_limit_per_class": None}


def describe_chain(chain: list[Stage]) -> str:
    return " → ".join(f"{s.kind} {s.label}" for s in chain) or "the model as given"


def arm_label(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_+.@" else "_" for c in name)


class Planner:
    """Turns a checked `schema.Experiment` into stages. Everything it plans from is set here, in `__init__`."""

    def __init__(self, experiment: schema.Experiment, reader: schema.Reader):
        self.x = experiment
        self.reader = reader
        self.stages: list[Stage] = []
        self._by_key: dict[str, Stage] = {}
        self.has_general = bool(experiment.general)
        self.pretrain_defaults = self.checked("pretrain", experiment.pretrain, "pretrain")
        self.budgets = {n: self.checked("pretrain", b, f"budgets.{n}") for n, b in experiment.budgets.items()}
        self.select_defaults = self.checked("select", experiment.select, "select")
        self.finetune_defaults = self.checked("finetune", experiment.finetune, "finetune")
        # The rate is chosen on dev by one sweep, on the baseline model, and shared by every arm (finetune/sweep.py).
        self.finetune_defaults.setdefault("learning_rate", "auto")
        self._sweep: Stage | None = None
        self.task_columns = self.checked("finetune", experiment.task.columns, "task")
        self.prepare = self.add(self.prepare_stage())
        self.mine = self.add(self.mine_stage()) if experiment.mine is not None else None
        self.inspect = self.add(self.inspect_stage()) if experiment.inspect is not None else None
        # The starting model: as given, or pretrained first (a Chinese BERT from a config, say).
        self.model: Stage | str = experiment.model
        if experiment.base is not None:
            base = dict(experiment.base)
            self.model = self.pretrain_stage(None, base, base.pop("data", "general"), None, "base")
        self.base_eval = self.lm_eval_stage(self.model if isinstance(self.model, str) else Ref(self.model), "base")
        self.clean = self.add(self.clean_stage()) if experiment.clean is not None else None

    # -- helpers --

    def add(self, stage: Stage) -> Stage:
        """The stage, or the identical one planned already (DAPT is shared by dapt and dapt+tapt)."""
        known = self._by_key.get(stage.key)
        if known is not None:
            return known
        self._by_key[stage.key] = stage
        self.stages.append(stage)
        return stage

    def checked(self, kind: str, options: dict, where: str, extra: set[str] = frozenset()) -> dict:
        """A section's options for a stage: names the stage's own (plus `extra`), paths resolved against the YAML."""
        fields = option_fields(arguments_of(kind))
        unknown = sorted(set(options) - set(fields) - set(extra))
        if unknown:
            raise self.reader.fail(where, f"unknown dontstop {kind} option(s) {', '.join(unknown)}")
        resolved = dict(options)
        for name, value in options.items():
            kind_of_path = path_kind(fields[name]) if name in fields else None
            if kind_of_path is not None:
                resolved[name] = self.path_value(kind_of_path, value, f"{where}.{name}")
        return resolved

    def path_value(self, kind_of_path: str, value, where: str):
        if isinstance(value, list):
            return [self.path_value(kind_of_path, v, f"{where}[{i}]") for i, v in enumerate(value)]
        if not isinstance(value, str):
            return value
        if kind_of_path == "model":
            return self.reader.model_of(value)
        if kind_of_path == "named" and "=" in value:
            name, _, path = value.partition("=")
            return f"{name}={self.reader.path_of(path, where)}"
        return self.reader.path_of(value, where)

    def prepared(self, name: str) -> Ref:
        return Ref(self.prepare, f"{name}.jsonl")

    # -- the stages every experiment has --

    def prepare_stage(self) -> Stage:
        x = self.x
        options = {
            "domain": x.domain,
            "general": x.general,
            "task_train": x.task.train,
            "task_dev": x.task.dev,
            "text_column": x.task.columns.get("text_column", "text"),
            "held_out_documents": x.held_out.documents,
            "seed": x.seed,
        }
        return Stage("prepare", "data", options, inputs=local_inputs("prepare", options))

    def mine_stage(self) -> Stage:
        options = {"corpus": [Named("domain", self.prepared("domain_train"))]}
        if self.has_general:
            options["against"] = [Named("general", self.prepared("general_train"))]
        options.update(self.checked("mine", self.x.mine, "mine"))
        if options.get("long_tail") and self.x.model:  # the long tail of the model the arms start from
            options.setdefault("model_name_or_path", self.x.model)
        return Stage("mine", "words", options, inputs=local_inputs("mine", options))

    def inspect_stage(self) -> Stage:
        names = ["general", "domain", "task"] if self.has_general else ["domain", "task"]
        options = {
            "corpus": [Named(name, self.prepared(f"{name}_train")) for name in names],
            "max_docs": 5000,
            "seed": self.x.seed,
            **self.checked("inspect", self.x.inspect, "inspect"),
        }
        return Stage("inspect", "overlap", options, inputs=local_inputs("inspect", options))

    def clean_stage(self) -> Stage:
        """`dontstop clean` of the task's training file, with the experiment's model and seed unless `clean:` says
        otherwise; it always writes the cleaned copy, which the arms fine-tune on."""
        x = self.x
        options = {
            "train_file": x.task.train,
            "model_name_or_path": self.model if isinstance(self.model, str) else Ref(self.model),
            "seed": x.seed,
            **{k: v for k, v in self.task_columns.items() if k in CLEAN_COLUMNS},
            **self.checked("clean", x.clean, "clean"),
            "write_clean": True,
        }
        if options.get("mode") == "finetune":
            options.setdefault("validation_file", x.task.dev)  # each fold's best epoch, chosen on the task's dev
        return Stage("clean", "labels", options, inputs=local_inputs("clean", options))

    def training_file(self, spec: schema.Arm) -> str | Ref:
        """The task's training file, or the clean stage's cleaned copy of it."""
        from ..clean import cleaned_name

        if self.clean is None or not spec.clean:
            return self.x.task.train
        return Ref(self.clean, cleaned_name(self.x.task.train))

    def lm_eval_stage(self, model: str | Ref, label: str) -> Stage:
        names = ["domain", *(["general"] if self.has_general else [])]
        held = self.x.held_out
        options = {
            "model_name_or_path": model,
            "eval_file": [Named(n, self.prepared(f"{n}_heldout")) for n in names]
            + [Named("task", self.prepared("task_dev"))],
            "warmup_file": [Named(n, self.prepared(f"{n}_train")) for n in [*names, "task"]],
            "eval_blocks": held.eval_blocks,
            "max_seq_length": held.max_seq_length,
            "batch_size": held.batch_size,
            "head_warmup_steps": held.head_warmup_steps,
            "warm_up_head": "always",  # heads trained alike: lm_eval.Meter.warm_up says why
            "seed": self.x.seed,
        }
        return self.add(Stage("lm-eval", arm_label(label), options, inputs=local_inputs("lm-eval", options)))

    # -- arms --

    def plan(self) -> Plan:
        arms = [self.arm(spec) for spec in self.x.arms]
        self.check_values()
        x = self.x
        settings = {**x.settings, "name": x.name, "output_dir": x.output_dir, "held_out": vars(x.held_out)}
        return Plan(x.name, x.path, x.output_dir, settings, self.stages, arms, self.inspect, self.base_eval, x.report)

    def arm(self, spec: schema.Arm) -> Arm:
        where = spec.where
        pretrain_overrides = self.checked("pretrain", spec.pretrain, f"{where}.pretrain")
        finetune_overrides = self.checked("finetune", spec.finetune, f"{where}.finetune")
        steps = spec.chain if spec.chain is not None else builtin_chain(spec.kind, spec.select)
        if spec.kind == "pcp" and spec.chain is None:
            steps = self.pcp_chain(finetune_overrides, where)
        if not isinstance(steps, list):
            raise self.reader.fail(where, "chain: expected a list of {pretrain: {...}} / {select: {...}} stages")
        chain: list[Stage] = []
        model: Stage | str = self.model
        selected: Stage | None = None
        last = max((j for j, step in enumerate(steps) if isinstance(step, dict) and "pretrain" in step), default=None)
        if spec.checkpoints and last is None:
            raise self.reader.fail(where, "checkpoints: needs a pretraining stage")
        for j, step in enumerate(steps):
            step_where = f"{where}.chain[{j}]"
            if not isinstance(step, dict) or len(step) != 1 or next(iter(step)) not in ("pretrain", "select"):
                raise self.reader.fail(step_where, "expected {pretrain: {...}} or {select: {...}}")
            ((kind, options),) = step.items()
            options = dict(options or {})
            if kind == "select":
                selected = self.select_stage(options, step_where)
                chain.append(selected)
                continue
            data = options.pop("data", "selected" if selected is not None else "domain")
            options = {**options, **pretrain_overrides}
            if j == last and any(f < 1 for f in spec.checkpoints):
                options["snapshots"] = [f for f in spec.checkpoints if f < 1]
            model = self.pretrain_stage(spec.name, options, data, model, step_where, selected)
            chain.append(model)
        if spec.weights != "raw" and not isinstance(model, Stage):
            raise self.reader.fail(where, f"weights: {spec.weights} needs a pretraining stage")
        final = model if spec.weights == "raw" or not isinstance(model, Stage) else Ref(model, spec.weights)
        description = spec.description or self.describe(spec, chain, pretrain_overrides, finetune_overrides)
        train = self.training_file(spec)
        arm = Arm(
            spec.name,
            description,
            chain,
            spec.weights,
            self.finetune_stage(spec.name, final, finetune_overrides, train, selected),
            self.lm_eval_stage(Ref(model, "" if spec.weights == "raw" else spec.weights), spec.name)
            if isinstance(model, Stage)
            else None,
            clean=train.stage if isinstance(train, Ref) else None,
            check=spec.check,
        )
        for fraction in (f for f in spec.checkpoints if f < 1):
            point = Ref(model, f"snapshot-{fraction:g}")
            label = f"{spec.name}@{fraction:g}"
            arm.budget.append(
                (fraction, self.finetune_stage(label, point, finetune_overrides, train, selected),
                 self.lm_eval_stage(point, label))
            )  # fmt: skip
        for size in self.x.train_limits:
            overrides = {**finetune_overrides, **size_options(size)}
            arm.sizes.append((size, self.finetune_stage(f"{spec.name}@{size}", final, overrides, train, selected)))
        return arm

    def describe(self, spec: schema.Arm, chain: list[Stage], pretrain: dict, finetune: dict) -> str:
        changes = [f"{k}={v}" for k, v in {**pretrain, **finetune}.items()]
        changes += [f"the {spec.weights} weights"] if spec.weights != "raw" else []
        changes += ["on the cleaned training file"] if self.clean is not None and spec.clean else []
        description = schema.BUILTIN_ARMS.get(spec.kind) or describe_chain(chain)
        return description + (f" ({', '.join(changes)})" if changes else "")

    def select_stage(self, options: dict, where: str) -> Stage:
        options = {**self.select_defaults, **self.checked("select", options, where)}
        task = self.x.task
        resolved = {
            "task_file": task.train,
            "validation_file": task.dev,
            "pool": [Named("domain", self.prepared("domain_train"))],
            "seed": self.x.seed,
            **options,
        }
        if task.test:
            resolved.setdefault("test_file", task.test)
        if "text_column" in self.task_columns:
            resolved.setdefault("text_column", self.task_columns["text_column"])
        strategy = resolved.get("strategy", "knn")
        label = f"{'curated' if strategy == 'random' and resolved.get('size') == 0 else strategy}-select"
        return self.add(Stage("select", label, resolved, inputs=local_inputs("select", resolved)))

    def pcp_chain(self, finetune_overrides: dict, where: str) -> list[dict]:
        """PCP: TAPT on the task's text wrapped in the template the arm fine-tunes with (`pretrain/prompted.py`)."""
        finetune = {**self.finetune_defaults, **self.task_columns, **finetune_overrides}
        if not finetune.get("prompt"):
            raise self.reader.fail(where, "pcp needs finetune: prompt: and verbalizer: (the template its pretraining "
                                   "wraps the task's text in)")  # fmt: skip
        # The prepared task text is in a column named text, whatever the task's own column is called.
        template = finetune["prompt"].replace(f"{{{finetune.get('text_column') or 'text'}}}", "{text}")
        return [{"pretrain": {"data": "task", "budget": "tapt", "prompt": template}}]

    def pretrain_stage(self, arm: str | None, options: dict, data, parent, where: str, selected=None) -> Stage:
        """A pretraining stage of `arm` (None: the base stage): the defaults, the budget (dapt/tapt) and the stage's
        own options, in that order."""
        options = dict(options)
        # The base stage takes only what base: says; an arm's stage the budget its data implies, unless it names one.
        default_budget = None if arm is None else {"domain": "dapt", "general": "dapt"}.get(data, "tapt")
        budget_name = options.pop("budget", None) or default_budget
        budget = self.budgets.get(budget_name, {}) if budget_name else {}
        options = self.checked("pretrain", options, where)
        resolved = {**self.pretrain_defaults, **budget, **options}
        resolved["train_file"] = self.training_data(data, where, selected)
        self.held_out_defaults(resolved, where)
        if parent is not None:
            resolved["model_name_or_path"] = parent if isinstance(parent, str) else Ref(parent, "")
        # A readable name for the progress view: the chain so far (dapt+tapt, knn-tapt), and the arm's name when
        # the arm changed options (dapt-ema's DAPT is not dapt's).
        label = budget_name if data != "selected" else f"{selected.label.removesuffix('-select')}-{budget_name}"
        if isinstance(parent, Stage) and parent.label != "base":
            label = f"{parent.label.split('.')[0]}+{label}"
        if arm is None:
            label = "base"
        elif options and arm != label:
            label = f"{label}.{arm}"
        return self.add(Stage("pretrain", arm_label(label), resolved, inputs=local_inputs("pretrain", resolved)))

    def training_data(self, data, where: str, selected: Stage | None) -> list:
        if data in ("domain", "general", "task"):
            if data == "general" and not self.has_general:
                raise self.reader.fail(where, "data: general needs corpora.general")
            return [self.prepared(f"{data}_train")]
        if data == "selected":
            if selected is None:
                raise self.reader.fail(where, "data: selected needs a select: stage before it")
            return [Ref(selected, "selected.jsonl")]
        return self.reader.paths_of(data, f"{where}.data")

    def held_out_defaults(self, resolved: dict, where: str) -> None:
        """What every pretraining stage of an experiment does unless told otherwise: evaluate on the held-out domain
        (and general) documents, log tokens seen, keep no checkpoint, segment with the mined words."""
        eval_files = [Named("domain", self.prepared("domain_heldout"))]
        if self.has_general:
            eval_files.append(Named("general", self.prepared("general_heldout")))
        resolved.setdefault("eval_file", eval_files)
        resolved.setdefault("validation_split_percentage", 0)
        resolved.setdefault("max_eval_samples", self.x.held_out.eval_samples)
        resolved.setdefault("seed", self.x.seed)
        resolved.setdefault("save_strategy", "no")
        resolved.setdefault("include_num_input_tokens_seen", True)  # logs tokens seen, for the compute table
        if resolved.get("replay_ratio") and not resolved.get("replay_file"):
            if not self.has_general:
                raise self.reader.fail(where, "replay_ratio needs corpora.general (or replay_file)")
            resolved["replay_file"] = self.prepared("general_train")
        if self.mine is not None:
            resolved.setdefault("user_dict", [Ref(self.mine, "user_dict.txt")])
            if resolved.get("ngram_adapter"):  # the adapter's n-grams: the mined words
                resolved.setdefault("ngrams", Ref(self.mine, "words.tsv"))
            if (resolved.get("glossary") or resolved.get("triples")) and self.x.mine.get("long_tail"):
                resolved.setdefault("knowledge_terms", Ref(self.mine, "long_tail.tsv"))  # expand the long tail only
        if resolved.get("ngram_adapter") and not resolved.get("ngrams"):
            raise self.reader.fail(where, "ngram_adapter needs ngrams: FILE (or a mine: section: its words)")

    def finetune_stage(
        self, arm: str, model, overrides: dict, train: str | Ref, selected: Stage | None = None
    ) -> Stage:
        options = self.finetune_options(model, overrides, train, selected, arm)
        if str(options.get("learning_rate")).lower() == "auto" and not options.get("learning_rate_sweep"):
            options["learning_rate_sweep"] = Ref(self.sweep_stage(), LearningRateSweep.FILE)
        return self.add(Stage("finetune", arm_label(arm), options, inputs=local_inputs("finetune", options)))

    def finetune_options(
        self, model, overrides: dict, train: str | Ref, selected: Stage | None = None, arm: str = "finetune"
    ) -> dict:
        task = self.x.task
        if overrides.get("tasks") or overrides.get("task"):  # an arm fine-tunes on the experiment's one task
            raise self.reader.fail(f"{arm}.finetune", "multi-task fine-tuning (tasks, task) is not available in an "
                                   "experiment; run dontstop finetune --tasks")  # fmt: skip
        # An experiment measures: it keeps no fine-tuned model unless asked (finetune: {keep_models: best}).
        options = {"keep_models": "none", **self.finetune_defaults, **self.task_columns, **overrides}
        options.update(self.unlabeled_defaults(options, selected, arm))
        options.update(
            model_name_or_path=model if isinstance(model, (str, Ref)) else Ref(model, ""),
            train_file=train,
            validation_file=task.dev,
        )
        if task.test:
            options["test_file"] = task.test
        if isinstance(options.get("seeds"), list):  # seeds: [1, 2, 3] in YAML, the option's 1,2,3
            options["seeds"] = ",".join(map(str, options["seeds"]))
        return options

    def sweep_stage(self) -> Stage:
        """The one learning-rate sweep of the experiment: the experiment's fine-tuning options, on the baseline
        model (the starting checkpoint), before any arm's own changes."""
        if self._sweep is None:
            # On the task's own training file: the rate is shared by arms with and without a cleaned copy.
            options = self.finetune_options(self.model, {}, self.x.task.train)
            self._sweep = self.add(Stage("lr-sweep", "baseline", options, inputs=local_inputs("lr-sweep", options)))
        return self._sweep

    def unlabeled_defaults(self, options: dict, selected: Stage | None, arm: str) -> dict:
        """For an arm whose fine-tuning reads unlabeled text (UDA, self-training) and names none: the task's training
        texts each seed's few-shot draw leaves out, and the arm's selected (kNN) texts if it has a select stage. Dev
        and test texts never: select leaves them out, and so does fine-tuning's own guard."""
        from ..finetune.method_args import reads_unlabeled

        if "unlabeled_file" in options or "unlabeled_from_train" in options:
            return {}
        try:
            if not reads_unlabeled(options, "finetune"):
                return {}
        except UsageError as e:
            raise self.reader.fail(f"arms ({arm})", str(e)) from None
        defaults: dict = {"unlabeled_from_train": True}
        if selected is not None:
            defaults["unlabeled_file"] = [Ref(selected, "selected.jsonl")]
        return defaults

    def check_values(self) -> None:
        """Build every stage's arguments as its run will, so a bad value fails now, before anything runs."""
        for stage in self.stages:
            try:
                stage.arguments(self.x.output_dir)
            except UsageError as e:
                raise UsageError(f"{self.x.path}: {e}") from None


def load_experiment(path: str, output_dir: str | None = None) -> Plan:
    """The plan of the experiment in the YAML file `path` (its output directory overridden by `output_dir`)."""
    reader = schema.Reader(path)
    experiment = schema.read_experiment(path, output_dir, reader)
    check_inputs(experiment, reader)
    return Planner(experiment, reader).plan()


def find_demo() -> str:
    """examples/demo.yaml of the repository this package runs from (or of the working directory)."""
    relative = os.path.join("examples", "demo.yaml")
    candidates = [os.getcwd(), os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))]
    for root in candidates:
        if os.path.exists(os.path.join(root, relative)):
            return os.path.join(root, relative)
    raise UsageError(f"cannot find {relative}: run the demo from the dontstop repository (make demo)")
