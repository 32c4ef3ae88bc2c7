"""Where the real-model kit lies and what it holds, for the tests and benchmarks that judge
mpqc on pretrained third-party models (`shared/realkit/prepare.sh`, or `make realkit`, builds
it into `$MPQC_REALKIT`, default `~/.cache/mpqc-realkit`)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["KitModel", "kit_dir", "kit_models"]


def kit_dir() -> Path:
    """The kit folder, whether or not it has been built."""
    return Path(os.environ.get("MPQC_REALKIT", Path.home() / ".cache" / "mpqc-realkit"))


@dataclass(frozen=True)
class KitModel:
    """One kit model: its files and the facts models.json states about it."""

    name: str
    model: Path
    calib: Path
    test: Path
    labels: Path
    accepts_batch: bool
    layer_ops: int  # Conv + Gemm + MatMul nodes in the graph


def kit_models() -> list[KitModel]:
    """Every model of the built kit, in models.json order; empty when the kit is absent."""
    root = kit_dir()
    index = root / "models.json"
    if not index.is_file():
        return []
    models = []
    for entry in json.loads(index.read_text())["models"]:
        name = entry["name"]
        models.append(
            KitModel(
                name=name,
                model=root / f"{name}.onnx",
                calib=root / f"{name}.calib.npz",
                test=root / f"{name}.test.npz",
                labels=root / f"{name}.labels.json",
                accepts_batch=bool(entry["accepts_batch"]),
                layer_ops=sum(entry["conv_gemm_matmul"].values()),
            )
        )
    return models
