"""PyTorch in: export a torch module to ONNX with a dynamic batch dimension. The zoo uses
the same path, so exported models meet the front end exactly as users' models do."""

from __future__ import annotations

import importlib
import os
import sys
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path

from mpqc.errors import ModelError, OptionError, UserCodeError, first_line
from mpqc.modelio import atomic_write_bytes, check_output

__all__ = ["export_module", "export_factory", "parse_shape"]

EXPORT_OPSET = 17


def parse_shape(text: str) -> tuple[int, ...]:
    """`1,3,32,32` (or `1x3x32x32`) as a tuple of positive integers."""
    try:
        shape = tuple(int(part) for part in text.replace("x", ",").split(",") if part.strip())
    except ValueError:
        raise OptionError(f"--input-shape must be integers separated by commas, got {text!r}") from None
    if not shape or any(d <= 0 for d in shape):
        raise OptionError(f"--input-shape must be positive integers, got {text!r}")
    return shape


def export_module(module: object, input_shape: Sequence[int], output: str | os.PathLike[str] | None = None) -> bytes:
    """Export in eval mode; returns the serialized model and writes it atomically if asked."""
    import torch

    if not isinstance(module, torch.nn.Module):
        raise UserCodeError(f"expected a torch.nn.Module, got {type(module).__name__}")
    module.eval()
    example = torch.zeros(*input_shape)
    with warnings.catch_warnings(), tempfile.TemporaryDirectory() as tmp:
        warnings.simplefilter("ignore")
        path = os.path.join(tmp, "model.onnx")
        try:
            torch.onnx.export(
                module,
                (example,),
                path,
                input_names=["input"],
                output_names=["output"],
                dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
                opset_version=EXPORT_OPSET,
                dynamo=False,
            )
        except Exception as exc:
            raise ModelError(f"torch export failed: {type(exc).__name__}: {first_line(exc)}") from None
        with open(path, "rb") as handle:
            payload = handle.read()
    if output is not None:
        atomic_write_bytes(Path(output), payload)
    return payload


def export_factory(target: str, input_shape: Sequence[int], output: str | os.PathLike[str]) -> Path:
    """`module:factory` -> ONNX file. The factory takes no arguments and returns a module."""
    module_name, _, func_name = target.partition(":")
    if not module_name or not func_name:
        raise UserCodeError(f"expected module:factory, got {target!r}")
    check_output(output)
    cwd = os.getcwd()
    added = cwd not in sys.path
    if added:
        sys.path.insert(0, cwd)  # as `python -m` does: a module in the current folder is importable
    try:
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:
            raise UserCodeError(f"cannot import {module_name!r}: {type(exc).__name__}: {first_line(exc)}") from None
        factory = getattr(module, func_name, None)
        if not callable(factory):
            raise UserCodeError(f"{target}: {module_name} has no callable {func_name!r}")
        try:
            built = factory()
        except Exception as exc:
            raise UserCodeError(f"your factory {target} raised {type(exc).__name__}: {first_line(exc)}") from None
    finally:
        if added and cwd in sys.path:
            sys.path.remove(cwd)
    export_module(built, input_shape, output)
    return Path(output)
