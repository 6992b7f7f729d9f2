"""One encoder, one head per task: each task's head is the library's own (`*ForSequenceClassification` for single-
and multi-label tasks, `*ForTokenClassification` for token tasks, with their losses), all of them reading the same
encoder, which they share by reference."""

from __future__ import annotations

from torch import nn


class MultiTaskModel(nn.Module):
    """`forward(task=t, **inputs)` runs task t's model; the encoder's weights are registered once (`encoder`), each
    head's modules under `heads.NAME`, so the optimizer, the best-epoch copy and `.to()` see every weight once.

    The task models themselves sit in a plain dict (not registered): each would register the shared encoder again.
    A task model saved alone (`save_task`) is a plain checkpoint of its class: encoder and that task's head."""

    def __init__(self, models: dict[str, nn.Module]):
        super().__init__()
        sequence = [m for m in models.values() if "TokenClassification" not in type(m).__name__]
        donor = (sequence or list(models.values()))[0]  # a sequence model's encoder carries the pooler BERT's uses
        self.encoder = donor.base_model
        self.config = donor.config  # what methods read (model type, vocabulary); each task keeps its own config
        self.names = list(models)
        heads = {}
        for name, model in models.items():
            setattr(model, model.base_model_prefix, self.encoder)
            heads[name] = nn.ModuleDict(
                {child: module for child, module in model.named_children() if child != model.base_model_prefix}
            )
        self.heads = nn.ModuleDict(heads)
        self.task_models = dict(models)

    @property
    def base_model(self) -> nn.Module:
        return self.encoder

    def get_input_embeddings(self) -> nn.Module:
        return self.encoder.get_input_embeddings()

    def train(self, mode: bool = True):
        super().train(mode)
        for model in self.task_models.values():  # their own flag too: some forwards read it
            model.training = mode
        return self

    def forward(self, task, labels=None, **inputs):
        return self.task_models[self.names[int(task)]](**inputs, labels=labels)

    def save_task(self, name: str, directory: str, tokenizer=None) -> None:
        self.task_models[name].save_pretrained(directory)
        if tokenizer is not None:
            tokenizer.save_pretrained(directory)
