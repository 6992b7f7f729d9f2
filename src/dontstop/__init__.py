"""dontstop: adapt a pretrained language model to a domain and a task by continued pretraining, and prove it helped."""

__version__ = "0.1.0"
