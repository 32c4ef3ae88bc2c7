"""The user cache (`~/.cache/mpqc`, or `$MPQC_CACHE_DIR`): results worth keeping between
runs, each keyed on the content hashes of everything it depends on.

Every entry is a JSON envelope with its schema name and version, its key, and a checksum
of its data. An entry that does not parse, has another schema or version, another key, a
wrong checksum or fails its reader's own validation is reported once, removed and
recomputed; it is never trusted."""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from mpqc.modelio import atomic_write_bytes

__all__ = ["cache_dir", "content_key", "Cache", "checksum"]

T = TypeVar("T")


def cache_dir() -> Path:
    """The user cache folder: `$MPQC_CACHE_DIR`, else `~/.cache/mpqc`."""
    return Path(os.environ.get("MPQC_CACHE_DIR", Path.home() / ".cache" / "mpqc"))


def content_key(parts: dict[str, Any]) -> str:
    """A key from named parts (content hashes, options): 24 hex digits."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:24]


def checksum(data: Any) -> str:
    """SHA-256 of a JSON value (keys sorted): what every cache entry is checked against."""
    return hashlib.sha256(json.dumps(data, sort_keys=True, allow_nan=True).encode()).hexdigest()


class Cache:
    """One kind of entry (`schema`, `version`) in one folder under the cache directory."""

    def __init__(self, schema: str, version: int, enabled: bool = True, folder: Path | None = None) -> None:
        self.schema, self.version, self.enabled = schema, version, enabled
        self.folder = folder if folder is not None else cache_dir() / schema
        self._warned: set[str] = set()

    def path(self, key: str) -> Path:
        return self.folder / f"{key}.json"

    def get(self, key: str, read: Callable[[Any], T]) -> T | None:
        """The entry's data through `read` (which raises on anything it does not accept), or
        None if absent, disabled, or corrupt (then reported and removed)."""
        if not self.enabled:
            return None
        path = self.path(key)
        if not path.is_file():
            return None
        try:
            envelope = json.loads(path.read_bytes().decode("utf-8"))
            if not isinstance(envelope, dict):
                raise ValueError("not a JSON object")
            if envelope.get("schema") != self.schema or envelope.get("version") != self.version:
                raise ValueError(f"schema {envelope.get('schema')!r} version {envelope.get('version')!r}")
            if envelope.get("key") != key:
                raise ValueError("key does not match the file name")
            if envelope.get("sha256") != checksum(envelope.get("data")):
                raise ValueError("checksum mismatch")
            return read(envelope["data"])
        except Exception as exc:  # any defect means: do not trust it
            self._corrupt(path, exc)
            return None

    def put(self, key: str, data: Any) -> None:
        if not self.enabled:
            return
        envelope = {"schema": self.schema, "version": self.version, "key": key, "sha256": checksum(data), "data": data}
        try:
            atomic_write_bytes(self.path(key), (json.dumps(envelope, sort_keys=True) + "\n").encode())
        except Exception as exc:  # a cache that cannot be written is only slower
            self._warn(f"mpqc: note: cache not written ({exc})")

    def _corrupt(self, path: Path, exc: BaseException) -> None:
        self._warn(f"mpqc: note: ignoring a corrupt cache entry {path} ({type(exc).__name__}: {exc}); recomputing")
        try:
            path.unlink()
        except OSError:
            pass

    def _warn(self, message: str) -> None:
        if message not in self._warned:
            self._warned.add(message)
            print(message, file=sys.stderr)
