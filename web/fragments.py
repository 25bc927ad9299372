"""Rendered parts of finished results, kept per web process: a succeeded clip's results never change.

The person table, the violations list and the chart data of a results page are the same for every
viewer and every visit once the job has succeeded (the worker writes them before it marks the job
done), so each web process renders them once and keeps the text in a small LRU bounded by bytes.
The key holds the job's `updated_at`: whatever changes the job document (a retry, an explanation,
a deletion of its footage) makes a new key. Access is checked before the cache is consulted.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable

MAX_BYTES = 32 * 1024 * 1024  # per web process


class Fragments:
    """A thread-safe LRU of rendered text parts (dicts of str / int), bounded by their total size."""

    def __init__(self, max_bytes: int = MAX_BYTES):
        self.max_bytes, self.size = max_bytes, 0
        self.items: OrderedDict[Hashable, tuple[dict, int]] = OrderedDict()
        self.lock = threading.Lock()
        self.hits = self.misses = 0

    def get(self, key: Hashable, make: Callable[[], dict]) -> dict:
        """The parts kept for key, or make() them (outside the lock) and keep them."""
        with self.lock:
            found = self.items.get(key)
            if found is not None:
                self.items.move_to_end(key)
                self.hits += 1
                return found[0]
            self.misses += 1
        parts = make()
        size = sum(len(v) for v in parts.values() if isinstance(v, str))
        if size > self.max_bytes // 4:
            return parts  # one huge page must not evict everything else
        with self.lock:
            if key not in self.items:
                self.items[key] = (parts, size)
                self.size += size
            while self.size > self.max_bytes:
                _, (_, dropped) = self.items.popitem(last=False)
                self.size -= dropped
        return parts


FRAGMENTS = Fragments()
