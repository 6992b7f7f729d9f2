"""Output directories (never overwritten without asking) and files written whole or not at all."""

from __future__ import annotations

import contextlib
import json
import os

from .errors import UsageError


def check_output_dir(path: str, overwrite: bool, resumable: bool = False) -> None:
    """Refuse a non-empty output directory unless the user asked to overwrite it."""
    if os.path.isfile(path):
        raise UsageError(f"--output_dir {path} is a file")
    if os.path.isdir(path) and os.listdir(path) and not overwrite:
        resume = ", or --resume_from_checkpoint last to continue" if resumable else ""
        raise UsageError(f"--output_dir {path} is not empty: pass --overwrite_output_dir to write into it{resume}")


def write_json(path: str, obj) -> None:
    """Write JSON atomically: a reader never sees a half-written file."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, ensure_ascii=False, default=str)
        f.write("\n")
    os.replace(tmp, path)


@contextlib.contextmanager
def staged(directory: str):
    """Write a stage's files under temporary names and move them into place only when all are written, so a failure
    halfway leaves no half-written output: `with staged(d) as path: open(path("x.json"), "w")...`."""
    os.makedirs(directory, exist_ok=True)
    pending: dict[str, str] = {}

    def path(name: str) -> str:
        pending[name] = os.path.join(directory, f".{name}.tmp{os.getpid()}")
        return pending[name]

    try:
        yield path
    except BaseException:
        for tmp in pending.values():
            if os.path.exists(tmp):
                os.remove(tmp)
        raise
    for name, tmp in pending.items():
        os.replace(tmp, os.path.join(directory, name))


def default_cache_dir() -> str:
    """dontstop's cache (tokenized corpora, locks): $DONTSTOP_CACHE, else ~/.cache/dontstop."""
    return os.environ.get("DONTSTOP_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "dontstop"))


def lock_path(directory: str) -> str:
    """Where the lock of an output directory lives: under the cache, keyed by the directory's real path, so that
    taking it writes nothing beside or inside the user's directory."""
    import hashlib

    key = hashlib.sha256(os.path.realpath(directory).encode()).hexdigest()[:24]
    return os.path.join(default_cache_dir(), "locks", f"{key}.lock")


def check_writable(directory: str, option: str = "--output_dir") -> None:
    """The directory, or the nearest existing directory above it, must be writable: checked before any model loads,
    so a run never trains for an hour and then fails to save."""
    path = os.path.abspath(directory)
    while not os.path.exists(path):
        path = os.path.dirname(path)
    if not os.path.isdir(path):
        raise UsageError(f"{option} {directory}: {path} is a file")
    import tempfile

    try:  # a real write, not os.access: permissions are not all (a read-only file system, /proc)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as e:
        raise UsageError(f"{option} {directory}: {path} is not writable ({e.strerror})") from None


_held: set[str] = set()  # the locks this process holds: taking one again (a stage inside `run`) is a no-op


@contextlib.contextmanager
def owned(directory: str, option: str = "--output_dir"):
    """Hold the output directory for the life of a run: a second process asking for it gets a one-line error naming
    the holder. The lock is an `flock` on a file under the cache, which the kernel releases when its holder dies,
    however it dies: a dead holder's lock is free, and taking it over says so."""
    import fcntl
    import logging

    check_writable(directory, option)
    lock = lock_path(directory)
    if lock in _held or int(os.environ.get("RANK", "0")) > 0:  # the ranks of one launch are one owner: rank 0
        yield
        return
    os.makedirs(os.path.dirname(lock), exist_ok=True)
    fd = os.open(lock, os.O_CREAT | os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = read_holder(fd)
        os.close(fd)
        who = f"process {holder}" if holder else "another process"
        raise UsageError(f"{option} {directory} is in use by {who}: wait for it, or choose another") from None
    previous = read_holder(fd)
    if previous and previous != os.getpid():
        logger = logging.getLogger(__name__)
        logger.warning("%s: taking over the lock of process %s, which is gone", directory, previous)
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    _held.add(lock)
    try:
        yield
    finally:
        _held.discard(lock)
        os.ftruncate(fd, 0)  # released cleanly: the next holder has nothing to take over
        os.close(fd)


def read_holder(fd: int) -> int | None:
    try:
        return int(os.pread(fd, 32, 0).decode().strip() or 0) or None
    except (OSError, ValueError):
        return None


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
