"""The tasks of a multi-task run: `--tasks tasks.yaml` or repeated `--task NAME=TRAIN[,DEV[,TEST]]`, each checked so
that a mistake is one line naming the file and line (or the option) before anything loads.

tasks.yaml is a list of tasks, or a mapping from each task's name to its settings, optionally under a `tasks:` key:

    - name: topic
      train: topic/train.jsonl        # paths relative to the YAML file
      dev: topic/dev.jsonl            # optional: without it --validation_split_percentage of train is held out
      test: topic/test.jsonl          # optional
      task_type: single_label         # optional (auto), and any of the column options below
      text_column: text
    - name: tags
      train: tags/train.jsonl
      label_column: tags
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import yaml

from ...errors import UsageError

COLUMN_OPTIONS = ("task_type", "text_column", "text_pair_column", "label_column", "label_separator", "label_type")
KEYS = ("name", "train", "dev", "test", *COLUMN_OPTIONS)


@dataclass
class TaskSpec:
    name: str
    train: str
    dev: str | None = None
    test: str | None = None
    columns: dict = field(default_factory=dict)  # the column options it sets (the run's own for the others)

    def options(self) -> dict:
        """The TaskArguments fields this task replaces."""
        files = {"train_file": self.train, "validation_file": self.dev, "test_file": self.test}
        return {**files, **self.columns}


def read_specs(tasks_file: str | None, task_options: list[str] | None) -> list[TaskSpec]:
    if tasks_file and task_options:
        raise UsageError("--tasks and --task: give the tasks in one of them")
    specs = from_yaml(tasks_file) if tasks_file else [from_option(value) for value in task_options]
    seen = set()
    for spec in specs:
        if spec.name in seen:
            where = tasks_file or "--task"
            raise UsageError(f"{where}: task name {spec.name!r} is given twice")
        seen.add(spec.name)
    if len(specs) < 2:
        where = f"--tasks {tasks_file}" if tasks_file else "--task"
        raise UsageError(f"{where}: multi-task fine-tuning needs at least two tasks, found {len(specs)}")
    return specs


def from_option(value: str) -> TaskSpec:
    """--task NAME=TRAIN[,DEV[,TEST]]"""
    name, equals, files = value.partition("=")
    paths = [p.strip() for p in files.split(",")]
    if not equals or not name.strip() or len(paths) > 3 or not paths[0]:
        raise UsageError(f"--task {value!r}: expected NAME=TRAIN[,DEV[,TEST]], e.g. topic=train.jsonl,dev.jsonl")
    paths += [""] * (3 - len(paths))
    return TaskSpec(name.strip(), paths[0], paths[1] or None, paths[2] or None)


def from_yaml(path: str) -> list[TaskSpec]:
    if not os.path.isfile(path):
        raise UsageError(f"--tasks {path}: no such file")
    with open(path, encoding="utf-8") as f:
        text = f.read()
    try:
        root = yaml.compose(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        raise UsageError(f"{path}{line}: not valid YAML ({getattr(e, 'problem', e)})") from None
    if isinstance(root, yaml.MappingNode) and [k.value for k, _ in root.value] == ["tasks"]:
        root = root.value[0][1]
    if isinstance(root, yaml.SequenceNode):
        entries = [(None, node) for node in root.value]
    elif isinstance(root, yaml.MappingNode):
        entries = [(key.value, node) for key, node in root.value]
    else:
        raise UsageError(f"{path}: expected a list of tasks, or a mapping from each task's name to its files")
    folder = os.path.dirname(os.path.abspath(path))
    return [spec_of(path, folder, name, node) for name, node in entries]


def spec_of(path: str, folder: str, name: str | None, node) -> TaskSpec:
    where = f"{path}:{node.start_mark.line + 1}"
    data = yaml.safe_load(yaml.serialize(node)) if node is not None else None
    if not isinstance(data, dict):
        raise UsageError(f"{where}: a task is a mapping (name, train, dev, test, column options)")
    unknown = sorted(set(data) - set(KEYS))
    if unknown:
        raise UsageError(f"{where}: unknown key {unknown[0]!r} (a task takes {', '.join(KEYS)})")
    name = str(data.get("name", name) or "").strip()
    if not name:
        raise UsageError(f"{where}: a task without a name")
    if not data.get("train"):
        raise UsageError(f"{where}: task {name!r} has no train file")

    def located(key):
        value = data.get(key)
        return os.path.join(folder, str(value)) if value else None

    columns = {key: str(data[key]) for key in COLUMN_OPTIONS if data.get(key) is not None}
    return TaskSpec(name, located("train"), located("dev"), located("test"), columns)
