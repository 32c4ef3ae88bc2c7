"""The run directory of `mpqc compile`: every finished step is persisted as it finishes, so
`--resume` continues an interrupted run without redoing finished candidates."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from mpqc.errors import MpqcError
from mpqc.modelio import atomic_write_bytes

__all__ = ["RunDir"]


class RunDir:
    def __init__(self, path: Path, inputs: dict[str, Any], resume: bool) -> None:
        self.path = path
        self.inputs = inputs
        self._pending: list[str] = []  # log lines said before the folder exists
        state = path / "state.json"
        if path.exists() and not path.is_dir():
            raise MpqcError(f"output path {path} is a file, not a folder")
        if resume:
            if not state.is_file():
                raise MpqcError(f"nothing to resume in {path}: no state.json")
            saved = json.loads(state.read_text()).get("inputs")
            if saved != inputs:
                changed = sorted(k for k in set(saved or {}) | set(inputs) if (saved or {}).get(k) != inputs.get(k))
                raise MpqcError(f"cannot resume {path}: it was started with different {', '.join(changed)}")
        elif path.exists() and any(path.iterdir()):
            if state.is_file():
                raise MpqcError(f"{path} holds an earlier run; pass --resume {path} or choose another -o")
            raise MpqcError(f"output folder {path} exists and is not empty")

    def open(self) -> None:
        """Create the folder and record the inputs: only once the run is known to be feasible."""
        (self.path / "candidates").mkdir(parents=True, exist_ok=True)
        self.write_json("state.json", {"inputs": self.inputs})
        pending, self._pending = self._pending, []
        for line in pending:
            self.log(line)

    @staticmethod
    def key(payload: Any) -> str:
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]

    def read_json(self, name: str) -> Any | None:
        file = self.path / name
        if not file.is_file():
            return None
        try:
            return json.loads(file.read_text())
        except json.JSONDecodeError:
            return None  # a file cut short by a kill: redo that step

    def write_json(self, name: str, data: Any) -> None:
        atomic_write_bytes(self.path / name, (json.dumps(data, indent=1, sort_keys=True) + "\n").encode())

    def write_bytes(self, name: str, data: bytes) -> Path:
        return atomic_write_bytes(self.path / name, data)

    def read_bytes(self, name: str) -> bytes | None:
        file = self.path / name
        return file.read_bytes() if file.is_file() else None

    def log(self, line: str) -> None:
        if not (self.path / "state.json").is_file():
            self._pending.append(line)
            return
        with open(self.path / "compile.log", "a", encoding="utf-8") as handle:
            handle.write(line.rstrip() + "\n")
