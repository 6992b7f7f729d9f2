"""`python -m dontstop`, the form `accelerate launch -m dontstop` and `torchrun -m dontstop` use."""

import sys

from .cli import main

sys.exit(main())
