"""The built-in models: trained ONNX files shipped with mpqc and their manifest.

Importing this package costs nothing heavy (no torch): the command line reaches the default
model through it. The torch definitions are in `mpqc.models.zoo`, their training in
`mpqc.models.train`."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

from mpqc.errors import ModelError

__all__ = ["DEFAULT_MODEL", "MODELS_DIR", "manifest", "zoo_path"]

DEFAULT_MODEL = "digits_cnn"
MODELS_DIR = Path(str(resources.files("mpqc.models")))


def manifest() -> dict[str, dict[str, Any]]:
    """Shipped models by name: file, description, input shape, float test top-1."""
    path = MODELS_DIR / "manifest.json"
    return json.loads(path.read_text()) if path.exists() else {}


def zoo_path(name: str = DEFAULT_MODEL) -> Path:
    """The shipped, trained ONNX file of a zoo model."""
    shipped = manifest()
    if name not in shipped:
        raise ModelError(f"unknown zoo model {name!r}; shipped: {', '.join(sorted(shipped))}")
    path = MODELS_DIR / str(shipped[name]["file"])
    if not path.exists():
        raise ModelError(f"zoo model {name} is not built; run: mpqc zoo train {name}")
    return path
