"""Training methods of `dontstop finetune`, one file each, registered by name (`base.register`).

Adversaries (`--adversarial NAME`): fgm, pgd, freelb. Loss terms: rdrop (`--rdrop_alpha`), contrastive
(`--contrastive_weight`), uda (`--uda_weight`, on unlabeled text), mlm (`--mlm_weight`, an auxiliary masked-LM
loss). Rounds: self_training (`--self_training_rounds`).
Any of them combine; `base.py` says which hooks the trainer (`trainer.py`) and the seed loop (`seeds.py`) call, and
adding a method adds a file here and its options to `method_args.py`, never a branch in the trainer.
"""

from . import contrastive, freelb, mlm, pgd, rdrop, self_training, uda  # noqa: F401  (each registers itself)
from .base import (  # noqa: F401  (the API)
    METHODS,
    Examples,
    Method,
    MethodContext,
    build_methods,
    check_methods,
    check_methods_model,
    method_settings,
    needs_unlabeled,
)
from .fgm import FGM  # noqa: F401  (the API)

ADVERSARIES = {name: cls for name, cls in METHODS.items() if cls.adversary}
