"""N-gram statistics over integer sequences, with numpy and bounded memory: the counting core of `dontstop mine`.

A corpus is a stream of integer codes (a Chinese character's code point, or an English word's 64-bit id) with 0 as a
separator that no n-gram may span (punctuation, line ends). Each n-gram is represented by its polynomial hash
H(c1..cn) = sum c_i * S * B^(n-i) modulo 2^64, computed for all positions at once by n rolling steps. S and B are
odd, so the hash of an n-gram's prefix (c1..c(n-1)) and suffix (c2..cn) follow from its own hash and its first and
last codes: the statistics need no strings until the end. Two different n-grams share a hash with probability
about m^2 / 2^65 for m distinct n-grams (3e-6 for m = 10 million): negligible next to the counts' own noise.

Counting is sharded: each shard (a few MB of text, counted by one worker process) gives exact (hash, count) tables
per length, merged into global tables. When these exceed `max_entries`, they are pruned by lossy counting (Manku &
Motwani 2002): every entry carries `delta`, the most it can have missed, and entries whose count + delta is at most
a threshold t are dropped; later arrivals get delta = the largest t so far (`error`). So a reported count is a lower
bound short of the truth by at most its delta (at most `error`), and any n-gram more frequent than `error` is kept;
with no pruning (`error` 0) the counts are exact, whatever the sharding. Memory is bounded by the entries (40 bytes
each, copied once while a shard is merged) plus one shard's arrays, independent of the corpus size.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

BASE = np.uint64(0x9E3779B97F4A7C15)  # odd (the 64-bit golden ratio), hence invertible modulo 2^64
BASE_INVERSE = np.uint64(pow(int(BASE), -1, 2**64))
# Each code enters the hash multiplied by SPREAD (odd), so that even the last code reaches the top bits that
# `sort_order` sorts on (a code point alone would only touch the low 21).
SPREAD = np.uint64(0xD6E8FEB86659FD93)
FIELDS = ("keys", "counts", "deltas", "first", "last")
ENTRY_BYTES = 40  # hash, count, delta, first and last code: 8 bytes each


def power(n: int) -> np.uint64:
    return np.uint64(pow(int(BASE), n, 2**64))


def hash_rows(codes: np.ndarray) -> np.ndarray:
    """The hash of each row of an (m, n) code matrix (the n-grams themselves)."""
    h = np.zeros(len(codes), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for column in codes.T.astype(np.uint64):
            h = h * BASE + column * SPREAD
    return h


@dataclass
class Table:
    """The n-grams of one length, sorted by hash."""

    keys: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.uint64))
    counts: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    deltas: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    first: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.uint64))
    last: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.uint64))

    def __len__(self) -> int:
        return len(self.keys)

    def find(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(positions, found) of `keys` in this table."""
        if len(self.keys) == 0:
            return np.zeros(len(keys), dtype=np.int64), np.zeros(len(keys), dtype=bool)
        pos = np.minimum(np.searchsorted(self.keys, keys), len(self.keys) - 1)
        return pos, self.keys[pos] == keys

    def count(self, keys: np.ndarray) -> np.ndarray:
        """Counts of `keys` (0 for those absent)."""
        pos, found = self.find(keys)
        return np.where(found, self.counts[pos], 0)

    def keep(self, mask: np.ndarray) -> None:
        for name in FIELDS:
            setattr(self, name, getattr(self, name)[mask])


POSITION_BITS = 24
LOW = np.uint64((1 << POSITION_BITS) - 1)


def sort_order(hashes: np.ndarray, scratch: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The permutation sorting `hashes` and the sorted hashes, about 3x faster than argsort: each hash's top 40 bits
    and its position are packed into one integer and plainly sorted. Equal hashes come out adjacent unless two
    different hashes share their top 40 bits (about m^2 / 2^41 pairs for m distinct: rare, not never), which the
    check catches. `scratch` holds reusable buffers (fresh memory costs page faults that rival the sort itself)."""
    m = len(hashes)
    if m < 1 << POSITION_BITS:
        scratch = scratch if scratch is not None else {}
        if scratch.get("positions") is None or len(scratch["positions"]) < m:
            scratch.update(
                positions=np.arange(m, dtype=np.uint64),
                packed=np.empty(m, np.uint64),
                ordered=np.empty(m, np.uint64),
            )
        packed = np.bitwise_and(hashes, ~LOW, out=scratch["packed"][:m])
        packed |= scratch["positions"][:m]
        packed.sort()
        packed &= LOW
        order = packed.view(np.int64)
        ordered = np.take(hashes, order, out=scratch["ordered"][:m])
        if m < 2 or not (ordered[1:] < ordered[:-1]).any():
            return order, ordered
    order = np.argsort(hashes, kind="stable")
    return order, hashes[order]


def rolling_hashes(codes: np.ndarray, max_n: int):
    """For n = 1..max_n: (n, the hash of the n-gram starting at each position, whether it spans no separator).
    One pass for all lengths; the arrays are views updated in place, valid only until the next step."""
    spread = codes.astype(np.uint64) * SPREAD
    h = np.zeros(len(codes), dtype=np.uint64)
    valid = codes != 0
    with np.errstate(over="ignore"):
        for n in range(1, min(max_n, len(codes)) + 1):
            m = len(codes) - n + 1
            h = h[:m]
            h *= BASE
            h += spread[n - 1 :]
            valid = valid[:m]
            if n > 1:
                valid &= codes[n - 1 :] != 0
            yield n, h, valid


def count_shard(codes: np.ndarray, max_n: int) -> list[Table]:
    """Exact tables of the n-grams of length 1..max_n in one shard of codes (0 = separator)."""
    tables = []
    buffer = np.empty(len(codes), dtype=np.uint64)
    scratch: dict = {}
    for n, h, valid in rolling_hashes(codes, max_n):
        starts = np.flatnonzero(valid)
        hashes = np.take(h, starts, out=buffer[: len(starts)])
        order, ordered = sort_order(hashes, scratch)
        boundary = np.flatnonzero(np.concatenate(([True], ordered[1:] != ordered[:-1]))) if len(ordered) else starts
        keys = ordered[boundary]
        counts = np.diff(np.append(boundary, len(ordered)))
        at = starts[order[boundary]]
        tables.append(
            Table(keys, counts.astype(np.int64), np.zeros(len(keys), np.int64), codes[at], codes[at + n - 1])
        )
    tables += [Table() for _ in range(max_n - len(tables))]  # a shard shorter than max_n
    return tables


@dataclass
class NgramCounts:
    """Global tables for lengths 1..max_n, merged shard by shard, pruned to `max_entries` by lossy counting."""

    max_n: int
    max_entries: int = 10_000_000
    tables: list[Table] = field(default_factory=list)
    tokens: int = 0  # codes counted (separators excluded): the N of the probabilities
    error: int = 0  # the largest count a pruned n-gram can have had
    prunings: int = 0

    def __post_init__(self):
        if not self.tables:
            self.tables = [Table() for _ in range(self.max_n)]

    @property
    def entries(self) -> int:
        return sum(len(t) for t in self.tables)

    def add(self, shard: list[Table]) -> None:
        """Merge one shard's tables into the global ones, then prune to the budget if it is exceeded."""
        self.tokens += int(shard[0].counts.sum())
        for i, (table, new) in enumerate(zip(self.tables, shard, strict=True)):
            # an n-gram arriving now may have been pruned before, with up to `error` occurrences
            new.deltas = np.full(len(new), self.error, np.int64)
            if len(table) == 0:  # sorted and distinct already: the shard's table is the global one
                self.tables[i] = new
                continue
            at = np.searchsorted(table.keys, new.keys)
            found = table.keys[np.minimum(at, len(table) - 1)] == new.keys
            table.counts[at[found]] += new.counts[found]  # keys are distinct within a shard: no repeated positions
            fresh = ~found
            for name in FIELDS:
                setattr(table, name, np.insert(getattr(table, name), at[fresh], getattr(new, name)[fresh]))
        if self.entries > self.max_entries:
            self.prune(int(self.max_entries * 0.75))  # down to 3/4 of the budget: room for what the next shard adds

    def prune(self, target: int) -> None:
        """Drop the entries whose count + delta is at most the threshold that leaves about `target` of them."""
        bounds = np.concatenate([t.counts + t.deltas for t in self.tables])
        if len(bounds) <= target:
            return
        threshold = int(np.partition(bounds, len(bounds) - target - 1)[len(bounds) - target - 1])
        for table in self.tables:
            table.keep(table.counts + table.deltas > threshold)
        self.error = max(self.error, threshold)
        self.prunings += 1

    def decode(self, n: int, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The codes (m, n) of length-n n-grams from their hashes, by walking down the prefixes; and which of them
        could be decoded (a prefix can be missing only after pruning)."""
        codes = np.zeros((len(keys), n), dtype=np.uint64)
        ok = np.ones(len(keys), dtype=bool)
        current = keys.copy()
        with np.errstate(over="ignore"):
            for length in range(n, 0, -1):
                table = self.tables[length - 1]
                pos, found = table.find(current)
                ok &= found
                codes[:, length - 1] = table.last[pos]
                current = (current - table.last[pos].astype(np.uint64) * SPREAD) * BASE_INVERSE
        return codes, ok

    def cohesion(self, codes: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(min, max) over the binary splits a|b of each n-gram of log p(ab) / (p(a) p(b)), pointwise mutual
        information with p = count / tokens."""
        n = codes.shape[1]
        pmis = []
        for k in range(1, n):
            left = self.tables[k - 1].count(hash_rows(codes[:, :k]))
            right = self.tables[n - k - 1].count(hash_rows(codes[:, k:]))
            # a part is at least as frequent as the whole; one pruned away counts as the whole (PMI's upper bound)
            left, right = np.maximum(left, counts), np.maximum(right, counts)
            pmis.append(np.log(counts) + np.log(self.tokens) - np.log(left) - np.log(right))
        pmis = np.stack(pmis)
        return pmis.min(axis=0), pmis.max(axis=0)

    def branching_entropy(self, n: int, keys: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(left, right) entropy of the code next to each length-n n-gram (`keys` sorted), in nats.

        From the (n+1)-grams: H = log c - (1/c) * sum_x c_x log c_x over the neighbours x. Occurrences next to a
        separator (or past the end of a shard) have no (n+1)-gram; each counts as a neighbour of its own (c_x = 1,
        adding nothing to the sum): a boundary is the freest context there is.
        """
        longer = self.tables[n]
        weights = longer.counts * np.log(np.maximum(longer.counts, 1))
        with np.errstate(over="ignore"):
            prefixes = (longer.keys - longer.last.astype(np.uint64) * SPREAD) * BASE_INVERSE
            suffixes = longer.keys - longer.first.astype(np.uint64) * SPREAD * power(n)
        # Most (n+1)-grams extend no candidate: a bitmap of the candidates' low hash bits (no false negatives) rules
        # out nearly all of them before the binary search, which is the expensive part.
        bits = np.uint64((1 << 22) - 1)
        maybe = np.zeros(1 << 22, dtype=bool)
        maybe[(keys & bits).astype(np.int64)] = True
        entropies = []
        # a left neighbour extends the n-gram on its suffix side, a right neighbour on its prefix side
        for parents in (suffixes, prefixes):
            sums = np.zeros(len(keys))
            if len(keys):
                near = np.flatnonzero(maybe[(parents & bits).astype(np.int64)])
                pos = np.minimum(np.searchsorted(keys, parents[near]), len(keys) - 1)
                hit = keys[pos] == parents[near]
                sums = np.bincount(pos[hit], weights=weights[near][hit], minlength=len(keys))
            entropies.append(np.maximum(np.log(counts) - sums / counts, 0.0))
        return entropies[0], entropies[1]


def occurrences(keys_by_length: dict[int, np.ndarray], codes: np.ndarray) -> dict[int, np.ndarray]:
    """How often each n-gram of `keys_by_length` ({n: sorted hashes}) occurs in `codes`: for counting candidates in
    another corpus without tables, all lengths in one rolling pass."""
    found = {n: np.zeros(len(keys), dtype=np.int64) for n, keys in keys_by_length.items()}
    for n, h, valid in rolling_hashes(codes, max(keys_by_length, default=0)):
        keys = keys_by_length.get(n)
        if keys is None or len(keys) == 0:
            continue
        hashes = h[valid]
        pos = np.minimum(np.searchsorted(keys, hashes), len(keys) - 1)
        hit = keys[pos] == hashes
        found[n] += np.bincount(pos[hit], minlength=len(keys))
    return found
