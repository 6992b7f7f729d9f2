"""Training methods of `dontstop finetune`, one file each, registered here by name.

An adversary (`--adversarial NAME`) perturbs the word embeddings after the clean backward pass (`attack`), adds the
perturbed batch's gradient and puts the embeddings back exactly (`restore`): `FinetuneTrainer.training_step`.
"""

from .fgm import FGM

ADVERSARIES = {"fgm": FGM}
