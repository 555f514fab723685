"""`ResultCache`: the last results /predict computed, keyed by (image SHA-256, the served
generation's `ServedModels.key`), so the same upload to the same variant is answered without
running the cascade again. Bounded
(least recently used first out) and safe to share between the server's threads."""
from __future__ import annotations

import threading
from collections import OrderedDict


class ResultCache:
    def __init__(self, size: int):
        if not isinstance(size, int) or size < 0:
            raise ValueError(f"ResultCache size: expected a whole number >= 0 (0: no cache), got {size!r}")
        self.size = size
        self._items: OrderedDict = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def get(self, sha256: str, generation: str):
        """The stored result, or None."""
        with self._lock:
            value = self._items.get((sha256, generation))
            if value is None:
                self.misses += 1
                return None
            self._items.move_to_end((sha256, generation))
            self.hits += 1
            return value

    def put(self, sha256: str, generation: str, value) -> None:
        if self.size == 0:
            return
        with self._lock:
            self._items[(sha256, generation)] = value
            self._items.move_to_end((sha256, generation))
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)
