"""PyTorch in: export a torch module to ONNX with a dynamic batch dimension. The zoo uses
the same path, so exported models meet the front end exactly as users' models do."""

from __future__ import annotations

import importlib
import io
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

from mpqc.errors import MpqcError, first_line
from mpqc.modelio import atomic_write_bytes

__all__ = ["export_module", "export_factory", "parse_shape"]

EXPORT_OPSET = 17


def parse_shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(part) for part in text.replace("x", ",").split(",") if part.strip())
    except ValueError:
        raise MpqcError(f"--input-shape must be integers separated by commas, got {text!r}") from None
    if not shape or any(d <= 0 for d in shape):
        raise MpqcError(f"--input-shape must be positive integers, got {text!r}")
    return shape


def export_module(module: object, input_shape: Sequence[int], output: str | os.PathLike[str] | None = None) -> bytes:
    """Export in eval mode; returns the serialized model and writes it atomically if asked."""
    import torch

    if not isinstance(module, torch.nn.Module):
        raise MpqcError(f"expected a torch.nn.Module, got {type(module).__name__}")
    module.eval()
    example = torch.zeros(*input_shape)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(
                module,
                (example,),
                buffer,
                input_names=["input"],
                output_names=["output"],
                dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
                opset_version=EXPORT_OPSET,
                dynamo=False,
            )
        except Exception as exc:
            raise MpqcError(f"torch export failed: {first_line(exc)}") from exc
    payload = buffer.getvalue()
    if output is not None:
        atomic_write_bytes(Path(output), payload)
    return payload


def export_factory(target: str, input_shape: Sequence[int], output: str | os.PathLike[str]) -> Path:
    """`module:factory` -> ONNX file. The factory takes no arguments and returns a module."""
    module_name, _, func_name = target.partition(":")
    if not module_name or not func_name:
        raise MpqcError(f"expected module:factory, got {target!r}")
    try:
        factory = getattr(importlib.import_module(module_name), func_name)
    except (ImportError, AttributeError) as exc:
        raise MpqcError(f"cannot import {target}: {exc}") from exc
    export_module(factory(), input_shape, output)
    return Path(output)
