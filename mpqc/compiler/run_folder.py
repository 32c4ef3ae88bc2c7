"""The run folder of `mpqc compile`: every finished step is stored as it finishes, so
`--resume` continues an interrupted run without redoing finished work.

Layout: `state.json` (the format and the inputs the run is bound to), `compile.log`,
`sensitivity.json`, `probes.json`, `candidates/` (PTQ quality per candidate), `jobs/` (QAT
jobs, see `mpqc.jobs`), and the outputs `model.onnx`, `scheme.json`, `report.json`,
`report.html`. Every file read back is validated; a corrupt one is reported, removed and
recomputed."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from mpqc.errors import RunFolderError
from mpqc.modelio import atomic_write_bytes, check_output_dir

__all__ = ["RunFolder", "FORMAT"]

FORMAT = 2
T = TypeVar("T")


class RunFolder:
    """Checks the folder on creation (creates nothing); `open` makes it once the run is
    known to be feasible."""

    def __init__(self, path: Path, inputs: dict[str, Any], resume: bool) -> None:
        self.path = path
        self.inputs = inputs
        self._pending: list[str] = []  # log lines said before the folder exists
        self._warned: set[str] = set()
        check_output_dir(path)
        state = path / "state.json"
        if resume:
            if not state.is_file():
                raise RunFolderError(f"nothing to resume in {path}: it has no state.json")
            saved = self._read_state(state)
            if saved.get("format") != FORMAT:
                raise RunFolderError(
                    f"{path} was made by an older mpqc (run-folder format {saved.get('format', 1)}, this one reads "
                    f"{FORMAT}); start a new run with another -o"
                )
            old = saved.get("inputs")
            if old != inputs:
                old = old if isinstance(old, dict) else {}
                changed = sorted(k for k in set(old) | set(inputs) if old.get(k) != inputs.get(k))
                raise RunFolderError(f"cannot resume {path}: it was started with different {', '.join(changed)}")
        elif path.exists() and any(path.iterdir()):
            if state.is_file():
                raise RunFolderError(f"{path} holds an earlier run; pass --resume {path} or choose another -o")
            raise RunFolderError(f"output folder {path} exists and is not empty")

    @staticmethod
    def _read_state(state: Path) -> dict[str, Any]:
        try:
            data = json.loads(state.read_bytes().decode("utf-8"))
        except (ValueError, OSError) as exc:
            raise RunFolderError(
                f"{state} is corrupt ({type(exc).__name__}); start a new run with another -o"
            ) from None
        if not isinstance(data, dict) or not isinstance(data.get("inputs"), dict):
            raise RunFolderError(f"{state} is corrupt (no inputs); start a new run with another -o")
        return data

    def open(self) -> None:
        """Create the folder and record the inputs."""
        (self.path / "candidates").mkdir(parents=True, exist_ok=True)
        self.write_json("state.json", {"format": FORMAT, "inputs": self.inputs})
        pending, self._pending = self._pending, []
        for line in pending:
            self.log(line)

    @property
    def opened(self) -> bool:
        return (self.path / "state.json").is_file()

    def read(self, name: str, parse: Callable[[Any], T]) -> T | None:
        """A stored JSON file through `parse` (which raises on what it does not accept); None
        if absent or corrupt (reported, removed)."""
        file = self.path / name
        if not file.is_file():
            return None
        try:
            return parse(json.loads(file.read_bytes().decode("utf-8")))
        except Exception as exc:  # any defect: recompute
            message = f"mpqc: note: {file} is corrupt ({type(exc).__name__}: {exc}); recomputing it"
            if message not in self._warned:
                self._warned.add(message)
                print(message, file=sys.stderr)
                self.log(message)
            file.unlink(missing_ok=True)
            return None

    def write_json(self, name: str, data: Any) -> None:
        atomic_write_bytes(self.path / name, (json.dumps(data, indent=1, sort_keys=True) + "\n").encode())

    def write_bytes(self, name: str, data: bytes) -> Path:
        return atomic_write_bytes(self.path / name, data)

    def log(self, line: str) -> None:
        if not self.opened:
            self._pending.append(line)
            return
        with open(self.path / "compile.log", "a", encoding="utf-8") as handle:
            handle.write(line.rstrip() + "\n")
