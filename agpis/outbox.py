"""Entries that could not reach Redis wait on local disk until it is back.

One JSON file per entry, written atomically (temp file, fsync, rename), named by the entry's
idempotency key, so a crash never leaves half an entry and a second copy of the same entry
overwrites the first. The flusher re-sends them with the queue's idempotent enqueue: an entry
that reached Redis just before a crash is not added twice (exactly once).
"""
from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path
from typing import Any, Callable

log = logging.getLogger("agpis.outbox")


class Outbox:
    def __init__(self, directory: str | os.PathLike):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def put(self, key: str, entry: dict[str, Any]) -> Path:
        path = self.dir / f"{key}.json"
        tmp = path.with_suffix(f".tmp.{os.getpid()}.{threading.get_ident()}")
        with open(tmp, "w") as f:
            json.dump(entry, f, ensure_ascii=False)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        return path

    def keys(self) -> list[str]:
        return sorted(p.stem for p in self.dir.glob("*.json"))

    def __len__(self) -> int:
        return len(self.keys())

    def flush(self, send: Callable[[dict[str, Any]], None]) -> int:
        """Send every waiting entry; stop at the first failure (Redis still down). -> sent."""
        sent = 0
        with self._lock:  # one flusher at a time, or an entry could be sent twice
            for path in sorted(self.dir.glob("*.json"), key=lambda p: p.stat().st_mtime):
                try:
                    entry = json.loads(path.read_text())
                except (OSError, json.JSONDecodeError) as e:
                    log.error("unreadable outbox entry kept aside", extra={"path": str(path), "error": str(e)})
                    path.rename(path.with_suffix(".bad"))
                    continue
                send(entry)  # raises while Redis is down: the file stays
                path.unlink()
                sent += 1
        return sent
