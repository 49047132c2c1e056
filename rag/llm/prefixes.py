"""Papers read before, kept on disk: the embedded model's state after reading a paper's prefix.

A per-paper reading's prompt starts with the fixed instructions and one abstract, the
same for every question about that paper (:mod:`rag.answer.readings`). After llama.cpp has read
that prefix once, its state (the KV cache of those tokens) is saved to a file here
(llama.cpp's slot save, a few ms); before the paper is read again, in this process or
any later one, the file is restored (a few ms) and only the question's tokens are
evaluated, instead of the whole abstract (seconds on a CPU). ``papercite warm`` fills
this store ahead of the first question.

Files are named by a hash of the prefix text, so a changed abstract or prompt is a new
file; the directory is per model file, since a state belongs to one model. The store
keeps under its budget by deleting the least recently used files first (a file's
modification time is its last use).
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from pathlib import Path

__all__ = ["PrefixStore"]

log = logging.getLogger(__name__)


class PrefixStore:
    """Saved llama.cpp states of prompt prefixes, by prefix text, within a disk budget.

    Args:
        directory: where the files live (created on first save).
        budget_bytes: the most the files may take together; the least recently used go first.
    """

    def __init__(self, directory: Path, budget_bytes: int) -> None:
        self.directory = directory
        self.budget_bytes = budget_bytes
        self._lock = threading.Lock()

    def name(self, prefix: str) -> str:
        """The file name that holds ``prefix``'s state."""
        return hashlib.sha256(prefix.encode()).hexdigest()[:32] + ".bin"

    def path(self, prefix: str) -> Path:
        """Where ``prefix``'s state is (or would be) kept."""
        return self.directory / self.name(prefix)

    def has(self, prefix: str) -> bool:
        """True when ``prefix``'s state is kept; marks it as used now, so it is evicted last."""
        path = self.path(prefix)
        try:
            os.utime(path)
        except OSError:
            return False
        return True

    def evict(self) -> list[str]:
        """Delete the least recently used files until the rest fit the budget; the names deleted."""
        with self._lock:
            try:
                files = [(e.stat().st_mtime, e.stat().st_size, e.name) for e in os.scandir(self.directory)]
            except FileNotFoundError:
                return []
            files = [f for f in files if f[2].endswith(".bin")]
            total = sum(size for _, size, _ in files)
            gone = []
            for _, size, name in sorted(files):
                if total <= self.budget_bytes:
                    break
                (self.directory / name).unlink(missing_ok=True)
                total -= size
                gone.append(name)
            if gone:
                log.info("Prefix store over its budget: evicted %d least recently used papers", len(gone))
            return gone

    def usage(self) -> tuple[int, int]:
        """(files kept, bytes they take)."""
        try:
            sizes = [e.stat().st_size for e in os.scandir(self.directory) if e.name.endswith(".bin")]
        except FileNotFoundError:
            return 0, 0
        return len(sizes), sum(sizes)
