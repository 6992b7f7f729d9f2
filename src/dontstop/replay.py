"""Replay: general text interleaved into continued pretraining at a fixed share of the training tokens, the usual
guard against forgetting what the model knew before DAPT.

    dontstop pretrain ... --train_file domain.jsonl --replay_file books.jsonl --replay_ratio 0.1

The ratio R is the share of training *tokens* that come from the general corpus, tokens counted as the model sees
them (content and special tokens, no padding). An epoch holds every domain example once plus m general slots, with
m = R / (1 - R) x (the epoch's domain tokens) / (the mean length of a general example), at least 1:
- packed blocks all have one length (bar each corpus's last), so a fraction R of an epoch's blocks are general, to
  within one block;
- line-by-line examples differ in length, so the share holds in expectation over an epoch, and over whole passes
  of the general corpus (each drawing every general example once) up to the rounding of m; the realised share is
  reported.

The slots are filled from an endless stream of general examples, one fresh seeded permutation of the general corpus
after another; epoch e takes stream positions [e m, (e + 1) m). A general corpus larger than an epoch's need thus
gives every epoch different general examples, all of them used before any repeats; a smaller one is cycled through,
each repeat with fresh masks (logged, and counted in metrics.json). Domain and general text never share a block.

The general slots are spread evenly over the epoch (position p is general when floor((p + 1) m / N) > floor(p m / N)),
so any w consecutive examples hold floor or ceil of w m / N general ones: the mix is even over time, never all the
general text at the end. Masks stay a pure function of (seed, epoch, index): domain example i keeps index i, general
slot j has index n_domain + j, and what fills a slot is itself a pure function of (seed, epoch, j), so runs with any
number of dataloader workers, and resumed runs, see the same examples with the same masks.
"""

from __future__ import annotations

import logging

import numpy as np

from .masking import EpochIndexed, EpochSampler

logger = logging.getLogger(__name__)

LENGTH_WINDOW_BATCHES = 50  # as EpochSampler: examples are grouped by length within windows of this many batches


class ReplayMix(EpochIndexed):
    """Domain examples 0..n-1, then m general slots; item `epoch * (n + m) + i` is resolved for its epoch."""

    def __init__(self, domain, general, ratio: float, seed: int):
        if not 0 < ratio < 1:
            raise ValueError(f"replay ratio must be in (0, 1), got {ratio}")
        if not len(domain) or not len(general):
            raise ValueError("replay needs a non-empty domain and general corpus")
        self.dataset = domain  # what EpochIndexed wraps: the domain examples keep their indices and masks
        self.general = general
        self.ratio = ratio
        self.seed = seed
        self.domain_lengths = np.asarray(domain.lengths(), dtype=np.int64)
        self.general_lengths = np.asarray(general.lengths(), dtype=np.int64)
        domain_tokens = int(self.domain_lengths.sum())
        wanted = ratio / (1 - ratio) * domain_tokens / self.general_lengths.mean()
        self.n_domain = len(domain)
        self.n_slots = max(1, round(wanted))
        self._cached: tuple[int, np.ndarray] | None = None  # (epoch, general example of each slot)

    def __len__(self) -> int:
        return self.n_domain + self.n_slots

    @property
    def cycled(self) -> bool:
        return self.n_slots > len(self.general)

    def _pass(self, p: int) -> np.ndarray:
        # Seeded by [seed, tag, pass]: never the sampler's [seed, epoch], so slot contents and order are independent.
        return np.random.default_rng([self.seed, 0x5E9A7, p]).permutation(len(self.general))

    def general_indices(self, epoch: int) -> np.ndarray:
        """The general example in each of the epoch's slots: stream positions [epoch m, (epoch + 1) m)."""
        if self._cached is None or self._cached[0] != epoch:
            n = len(self.general)
            start, stop = epoch * self.n_slots, (epoch + 1) * self.n_slots
            first, last = start // n, (stop - 1) // n
            stream = np.concatenate([self._pass(p) for p in range(first, last + 1)])
            self._cached = (epoch, stream[start - first * n : stop - first * n])
        return self._cached[1]

    def __getitem__(self, k: int) -> dict:
        epoch, i = divmod(int(k), len(self))
        if i < self.n_domain:
            item = self.dataset[i]
        else:
            item = self.general[int(self.general_indices(epoch)[i - self.n_domain])]
        return {**item, "idx": i, "epoch": epoch}

    def lengths(self, epoch: int = 0) -> np.ndarray:
        return np.concatenate([self.domain_lengths, self.general_lengths[self.general_indices(epoch)]])

    def sampler(self, seed: int, batch_size: int, by_length: bool) -> ReplaySampler:
        return ReplaySampler(self, seed, batch_size, by_length)

    def log_plan(self, path: str) -> None:
        domain, general = self.epoch_tokens(0)
        logger.info(
            "Replay of %s: %d general examples per epoch beside %d domain examples, %.4f of the tokens (asked %s); "
            "the general corpus has %d, %.2f passes per epoch",
            path,
            self.n_slots,
            self.n_domain,
            general / (domain + general),
            self.ratio,
            len(self.general),
            self.n_slots / len(self.general),
        )
        if self.cycled:
            logger.warning(
                "Replay: %s is smaller than one epoch's share, so it is cycled through: each general example is "
                "drawn about %.1f times per epoch, each time with fresh masks",
                path,
                self.n_slots / len(self.general),
            )

    def epoch_tokens(self, epoch: int, positions: np.ndarray | None = None) -> tuple[int, int]:
        """(domain tokens, general tokens) of the epoch, or of the given example indices of it."""
        lengths = self.lengths(epoch)
        if positions is None:
            return int(lengths[: self.n_domain].sum()), int(lengths[self.n_domain :].sum())
        general = positions >= self.n_domain
        return int(lengths[positions[~general]].sum()), int(lengths[positions[general]].sum())

    def report(self, epochs: float, sampler: ReplaySampler, examples_per_batch: int) -> dict:
        """What training actually drew, from the epochs it ran (`TrainerState.epoch`; the last, partial epoch to the
        nearest batch): token counts, realised share, general examples and passes over the general corpus."""
        full = int(epochs)
        batches = -(-len(self) // examples_per_batch)
        drawn = min(len(self), round((epochs - full) * batches) * examples_per_batch)
        domain = general = slots = 0
        for epoch in range(full + (drawn > 0)):
            positions = sampler.order(epoch)[:drawn] if epoch == full else None
            d, g = self.epoch_tokens(epoch, positions)
            domain, general = domain + d, general + g
            slots += self.n_slots if positions is None else int((positions >= self.n_domain).sum())
        return {
            "ratio": self.ratio,
            "ratio_of": "training tokens (special tokens counted, padding not)",
            "domain_examples_per_epoch": self.n_domain,
            "general_examples_per_epoch": self.n_slots,
            "general_corpus_examples": len(self.general),
            "cycled": self.cycled,
            "planned_share_per_epoch": round(self.epoch_tokens(0)[1] / sum(self.epoch_tokens(0)), 6),
            "epochs_trained": round(epochs, 4),
            "domain_tokens": domain,
            "general_tokens": general,
            "realised_share": round(general / max(1, domain + general), 6),
            "general_examples_drawn": slots,
            "general_passes": round(slots / len(self.general), 4),
        }


class ReplaySampler(EpochSampler):
    """EpochSampler's seeded order, with the general slots spread evenly among the shuffled domain examples.

    Slot j goes to the j-th general position, so any prefix of an epoch draws the start of the general stream: a run
    stopped by `--max_steps` inside an epoch repeats no general example before it has used them all. With `by_length`,
    examples are sorted by length within windows of 50 batches and the batches shuffled within their window (not
    across the epoch, as EpochSampler does), so each window keeps its share of general text.
    """

    def __init__(self, mix: ReplayMix, seed: int, batch_size: int = 1, by_length: bool = False):
        super().__init__(len(mix), seed, batch_size=batch_size)
        self.mix = mix
        self.by_length = by_length

    def order(self, epoch: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, epoch])
        n, m = self.mix.n_domain, self.mix.n_slots
        is_general = np.diff(np.arange(self.n + 1, dtype=np.int64) * m // self.n).astype(bool)
        order = np.empty(self.n, dtype=np.int64)
        order[~is_general] = rng.permutation(n)
        order[is_general] = n + np.arange(m)
        if not self.by_length:
            return order
        lengths = self.mix.lengths(epoch)
        window = self.batch_size * LENGTH_WINDOW_BATCHES
        grouped = []
        for chunk in np.split(order, range(window, self.n, window)):
            chunk = chunk[np.argsort(-lengths[chunk], kind="stable")]
            batches = np.split(chunk, range(self.batch_size, len(chunk), self.batch_size))
            grouped += [batches[i] for i in rng.permutation(len(batches))]
        return np.concatenate(grouped)
