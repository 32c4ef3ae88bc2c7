"""Deterministic training of zoo models on scikit-learn's digits, exported to ONNX with
their float test accuracy (measured in ONNX Runtime) recorded in `manifest.json`."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from mpqc.models import DEFAULT_MODEL, MODELS_DIR, manifest
from mpqc.models.zoo import ZOO, ZooEntry

from mpqc.data import adapt_digits
from mpqc.errors import ModelError
from mpqc.export import export_module
from mpqc.modelio import atomic_write_bytes, load_model
from mpqc.signature import InputSpec

__all__ = ["TrainResult", "train"]


@dataclass(frozen=True)
class TrainResult:
    """A trained zoo model: its ONNX file and its float test top-1 in ONNX Runtime."""

    name: str
    path: Path
    test_top1: float
    epochs: int
    seed: int


def _spec(entry: ZooEntry) -> list[InputSpec]:
    return [InputSpec("input", np.dtype(np.float32), (None, *entry.input_shape[1:]))]


def train(name: str, epochs: int | None = None, seed: int = 0, output_dir: Path | None = None) -> TrainResult:
    """Train zoo model `name` on digits (deterministic for a seed), export it, and record it in the
    manifest when written to the package's models/ folder."""
    if name not in ZOO:
        raise ModelError(f"unknown zoo model {name!r}; choose from {', '.join(ZOO)}")
    entry = ZOO[name]
    epochs = entry.epochs if epochs is None else epochs
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    train_set = adapt_digits(_spec(entry), "train")
    x = torch.from_numpy(np.asarray(train_set.inputs["input"]))
    y = torch.from_numpy(np.asarray(train_set.labels))
    model = entry.factory()
    optimizer = torch.optim.AdamW(model.parameters(), lr=entry.lr, weight_decay=1e-4)
    steps = epochs * ((len(x) + 63) // 64)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=entry.lr, total_steps=steps)
    generator = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x), 64):
            idx = order[start : start + 64]
            optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
            loss.backward()
            optimizer.step()
            schedule.step()
    out_dir = output_dir or MODELS_DIR
    path = out_dir / f"{name}.onnx"
    export_module(model, entry.input_shape, path)
    top1 = _onnx_top1(path, entry)
    if output_dir is None or output_dir == MODELS_DIR:
        _record(name, entry, top1, epochs, seed)
    return TrainResult(name, path, top1, epochs, seed)


def _onnx_top1(path: Path, entry: ZooEntry) -> float:
    from mpqc.quality import QualityMeasure
    from mpqc.runtime import Runner, make_session
    from mpqc.signature import input_specs

    model = load_model(path)
    test = adapt_digits(_spec(entry), "test")
    outputs = Runner(make_session(model), input_specs(model)).run(test)
    return QualityMeasure("top1").score(outputs, None, test.labels)


def _record(name: str, entry: ZooEntry, top1: float, epochs: int, seed: int) -> None:
    data = manifest()
    data[name] = {
        "file": f"{name}.onnx",
        "description": entry.description,
        "input_shape": list(entry.input_shape),
        "float_test_top1": round(top1, 4),
        "data": "sklearn digits, fixed test split (450 samples)",
        "epochs": epochs,
        "seed": seed,
        "default": name == DEFAULT_MODEL,
    }
    atomic_write_bytes(MODELS_DIR / "manifest.json", (json.dumps(data, indent=2, sort_keys=True) + "\n").encode())
