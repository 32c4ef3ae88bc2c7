"""Loading and saving models, with the failures a user can cause turned into `MpqcError`.

Saving is atomic (temp file in the target folder, then rename) so an error never leaves a
half-written file behind.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import onnx
import onnx_ir as ir
from google.protobuf.message import DecodeError

from mpqc.errors import MpqcError, first_line

__all__ = ["load_model", "save_model", "atomic_write_bytes", "to_proto", "from_proto"]


def load_model(source: str | os.PathLike[str] | onnx.ModelProto | ir.Model) -> ir.Model:
    """Load an ONNX model from a path, a ModelProto or an IR model (which is returned as is)."""
    if isinstance(source, ir.Model):
        return source
    if isinstance(source, onnx.ModelProto):
        return ir.serde.deserialize_model(source)
    path = Path(source)
    if not path.exists():
        raise MpqcError(f"model file not found: {path}")
    if path.is_dir():
        raise MpqcError(f"model path is a directory, not an ONNX file: {path}")
    try:
        proto = onnx.load(str(path))
    except (DecodeError, RuntimeError, ValueError, onnx.onnx_cpp2py_export.checker.ValidationError) as exc:
        raise MpqcError(f"{path} is not a readable ONNX model ({type(exc).__name__}: {first_line(exc)})") from exc
    if not proto.graph.node and not proto.graph.output:
        raise MpqcError(f"{path} is not an ONNX model: it has no graph")
    try:
        return ir.serde.deserialize_model(proto)
    except Exception as exc:  # onnx-ir raises several types on malformed protos
        raise MpqcError(f"{path} is a malformed ONNX model: {first_line(exc)}") from exc


def to_proto(model: ir.Model) -> onnx.ModelProto:
    return ir.serde.serialize_model(model)


def from_proto(proto: onnx.ModelProto) -> ir.Model:
    return ir.serde.deserialize_model(proto)


def save_model(model: ir.Model | onnx.ModelProto, path: str | os.PathLike[str]) -> Path:
    """Serialize and write atomically; returns the final path."""
    proto = model if isinstance(model, onnx.ModelProto) else to_proto(model)
    return atomic_write_bytes(path, proto.SerializeToString())


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return target
