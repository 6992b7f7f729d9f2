"""Everything an experiment reads from the user, checked before its first stage runs: a bad corpus, task file or
model is one error naming the user's file (not a stage's copy of it), and nothing is written."""

from __future__ import annotations

import os

from ..errors import UsageError
from . import schema


def check_inputs(experiment: schema.Experiment, reader: schema.Reader) -> None:
    from ..corpus import check_corpus_file
    from ..tasks import load_task

    for role, paths in (("domain", experiment.domain), ("general", experiment.general)):
        documents = sum(check_corpus_file(path, "text") or 0 for path in paths)
        held = experiment.held_out.documents
        if 0 < documents <= held:
            raise reader.fail(
                f"corpora.{role}",
                f"{documents} documents, and held_out.documents holds {held} out of each corpus: at least one must "
                "be left to train on (lower held_out.documents)",
            )
    task = experiment.task
    columns = {k: v for k, v in task.columns.items() if k in TASK_COLUMNS}
    load_task(task.train, task.dev, task.test, task.columns.get("task_type", "auto"), **columns)
    models = [("model", experiment.model)]
    models += [(f"base.{k}", v) for k, v in (experiment.base or {}).items() if k in ("config_name", "tokenizer_name")]
    if (experiment.clean or {}).get("model_name_or_path"):
        models.append(("clean.model_name_or_path", reader.model_of(str(experiment.clean["model_name_or_path"]))))
    for where, model in models:
        check_model(reader, where, model)


# The options of `load_task` that a task: section may set (the rest of a task: section are fine-tuning options).
TASK_COLUMNS = ("text_column", "label_column", "text_pair_column", "label_separator", "label_type")


def check_model(reader: schema.Reader, where: str, model: str | None) -> None:
    """A local model directory must hold a model; `pkg:NAME` must be installed; a hub id is taken on trust."""
    from ..models import ADAPTER_CONFIG, resolve_model_path

    if not model:
        return
    try:
        path = resolve_model_path(model)
    except UsageError as e:
        raise reader.fail(where, str(e)) from None
    if os.path.isdir(path) and not any(
        os.path.exists(os.path.join(path, name)) for name in ("config.json", ADAPTER_CONFIG)
    ):
        raise reader.fail(where, f"{model}: a directory without config.json: not a model")
