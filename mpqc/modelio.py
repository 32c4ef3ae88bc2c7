"""Loading models and writing outputs, with the failures a user can cause turned into
one-line errors.

Outputs are written atomically (a temporary file beside the target, then a rename), so
an error never leaves a half-written file. mpqc writes only to a new path or over a
regular file: a directory, a device (`/dev/null`), a pipe or a socket is refused. A
symbolic link is written through: its target is replaced and the link stays. Files are
created with the process umask. `check_output` makes the same checks up front, before
any expensive work.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

import onnx
import onnx_ir as ir
from google.protobuf.message import DecodeError

from mpqc.errors import ModelError, OutputError, first_line

__all__ = ["load_model", "save_model", "atomic_write_bytes", "check_output", "check_output_dir"]


def load_model(source: str | os.PathLike[str] | onnx.ModelProto | ir.Model) -> ir.Model:
    """Load an ONNX model from a path, a ModelProto or an IR model (returned as is)."""
    if isinstance(source, ir.Model):
        return source
    if isinstance(source, onnx.ModelProto):
        return ir.serde.deserialize_model(source)
    path = Path(source)
    if not path.exists():
        raise ModelError(f"model file not found: {path}")
    if path.is_dir():
        raise ModelError(f"model path is a directory, not an ONNX file: {path}")
    if not path.is_file():
        raise ModelError(f"model path is not a regular file: {path}")
    try:
        proto = onnx.load(str(path), load_external_data=False)
        if any(t.data_location == onnx.TensorProto.EXTERNAL for t in proto.graph.initializer):
            _check_external(proto, path)
            onnx.load_external_data_for_model(proto, str(path.parent))
    except ModelError:
        raise
    except (DecodeError, RuntimeError, ValueError, OSError, onnx.onnx_cpp2py_export.checker.ValidationError) as exc:
        raise ModelError(f"{path} is not a readable ONNX model ({type(exc).__name__}: {first_line(exc)})") from None
    if not proto.graph.node and not proto.graph.output:
        raise ModelError(f"{path} is not an ONNX model: it has no graph")
    try:
        return ir.serde.deserialize_model(proto)
    except Exception as exc:  # onnx-ir raises several types on malformed protos
        raise ModelError(f"{path} is a malformed ONNX model: {first_line(exc)}") from None


def _check_external(proto: onnx.ModelProto, path: Path) -> None:
    """External weights must lie beside the model, inside its folder."""
    base = path.parent.resolve()
    for tensor in proto.graph.initializer:
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        location = next((e.value for e in tensor.external_data if e.key == "location"), "")
        target = (base / location).resolve()
        if base not in target.parents and target != base:
            raise ModelError(f"{path}: external data {location!r} of {tensor.name} lies outside the model's folder")
        if not target.is_file():
            raise ModelError(f"{path}: external data file {location!r} of {tensor.name} is missing")


def save_model(model: ir.Model | onnx.ModelProto, path: str | os.PathLike[str]) -> Path:
    """Serialize and write atomically; returns the path written."""
    proto = model if isinstance(model, onnx.ModelProto) else ir.serde.serialize_model(model)
    return atomic_write_bytes(path, proto.SerializeToString())


def _real(path: str | os.PathLike[str]) -> Path:
    """The path a write lands on: a symbolic link's final target, else the path itself."""
    target = Path(path)
    if target.is_symlink():
        return Path(os.path.realpath(target))
    return target


def check_output(path: str | os.PathLike[str], probe: bool = True) -> Path:
    """Refuse, before any work, an output mpqc would not or could not write. Returns the
    real path (through symbolic links). `probe` also creates and removes a file there."""
    shown = Path(path)
    if len(os.fsencode(shown.name)) > 240:  # before any stat: the system refuses such names outright
        raise OutputError(f"cannot write {shown}: the file name is too long ({len(shown.name)} characters)")
    target = _real(path)
    if target.exists() or target.is_symlink():
        mode = os.stat(target).st_mode if target.exists() else 0
        if stat.S_ISDIR(mode):
            raise OutputError(f"output {shown} is a directory; give a file path")
        if not stat.S_ISREG(mode):
            raise OutputError(f"output {shown} exists and is not a regular file; mpqc only writes new or regular files")
    parent = target.parent
    existing = parent
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise OutputError(f"cannot write {shown}: {existing} is not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write {shown}: {existing} is not writable")
    try:
        limit = os.pathconf(existing, "PC_NAME_MAX")
    except (OSError, ValueError):
        limit = 255
    if len(os.fsencode(target.name)) > limit - 16:  # room for the temporary file's prefix and suffix
        raise OutputError(f"cannot write {shown}: the file name is too long ({len(target.name)} characters)")
    if probe:
        _probe(existing, shown)
    return target


def check_output_dir(path: str | os.PathLike[str]) -> Path:
    """Like `check_output` for a folder mpqc will create or fill."""
    target = Path(path)
    if target.exists() and not target.is_dir():
        raise OutputError(f"output {target} exists and is not a folder")
    existing = target
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise OutputError(f"cannot create {target}: {existing} is not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write {target}: {existing} is not writable")
    _probe(existing, target)
    return target


def _probe(folder: Path, shown: Path) -> None:
    """Create and remove a file: the only sure test on special file systems (/proc, /sys)."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=".mpqc-probe.", dir=folder)
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        raise OutputError(f"cannot write {shown}: {exc.strerror or first_line(exc)} in {folder}") from None


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write `data` to `path` all at once; returns the path as given."""
    shown = Path(path)
    target = check_output(shown, probe=False)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot write {shown}: {exc.strerror or first_line(exc)}") from None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name[:40]}.", suffix=".tmp", dir=target.parent)
    except OSError as exc:
        raise OutputError(f"cannot write {shown}: {exc.strerror or first_line(exc)}") from None
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, target)
    except BaseException as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise OutputError(f"cannot write {shown}: {exc.strerror or first_line(exc)}") from None
        raise
    return shown


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
