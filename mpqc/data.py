"""Input data: scikit-learn's digits, an `.npz` file, a Python `module:function`, or arrays.

A source is read into raw arrays in the model's own layout, then checked against the
model's inputs and turned into a `Dataset` whose arrays keep the sample axis first.

`.npz` files hold one array per model input, named like it, and optionally `labels`. An
input whose batch is not on axis 0 is declared with a string array `__batch_axes__`,
e.g. `np.array(["state=1"])`; without it the axis is inferred from the graph (see
`mpqc.runtime`). `module:function` imports and runs your code (the current folder is
importable): it returns such a dict, or an iterable of batch dicts.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mpqc.errors import DataError, UserCodeError, first_line
from mpqc.signature import InputSpec

__all__ = ["Dataset", "RawData", "read_source", "to_dataset", "digits_split", "adapt_digits", "DIGITS"]

DIGITS = "digits"
_DIGITS_TEST, _DIGITS_VALIDATION, _DIGITS_CALIBRATION = 450, 300, 512
BATCH_AXES_KEY = "__batch_axes__"


@dataclass(frozen=True)
class Dataset:
    """Arrays by model input name, sample axis first; labels optional."""

    inputs: Mapping[str, np.ndarray]
    labels: np.ndarray | None
    name: str

    def __len__(self) -> int:
        return len(next(iter(self.inputs.values())))

    def slice(self, start: int, stop: int) -> Dataset:
        labels = None if self.labels is None else self.labels[start:stop]
        return Dataset({k: v[start:stop] for k, v in self.inputs.items()}, labels, self.name)

    def take(self, count: int) -> Dataset:
        return self.slice(0, count)

    def subset(self, indices: np.ndarray, name: str) -> Dataset:
        labels = None if self.labels is None else self.labels[indices]
        return Dataset({k: v[indices] for k, v in self.inputs.items()}, labels, name)

    def batches(self, size: int) -> Iterator[Dataset]:
        for start in range(0, len(self), size):
            yield self.slice(start, start + size)

    def with_labels(self, labels: np.ndarray | None) -> Dataset:
        return Dataset(self.inputs, labels, self.name)

    def digest(self) -> str:
        """Content hash of every array and the labels: what caches are keyed on."""
        h = hashlib.sha256()
        for name in sorted(self.inputs):
            array = np.ascontiguousarray(self.inputs[name])
            h.update(f"{name}|{array.dtype.str}|{array.shape}".encode())
            h.update(array.tobytes())
        if self.labels is not None:
            labels = np.ascontiguousarray(self.labels)
            h.update(f"labels|{labels.dtype.str}|{labels.shape}".encode())
            h.update(labels.tobytes())
        return h.hexdigest()


@dataclass(frozen=True)
class RawData:
    """Arrays as the source gave them (model layout), before any check."""

    arrays: dict[str, np.ndarray]
    labels: np.ndarray | None
    name: str
    batch_axes: dict[str, int] = field(default_factory=dict)


def read_source(spec: str | os.PathLike[str] | Mapping[str, Any] | Dataset) -> RawData | Dataset:
    """A path to `.npz`, `module:function`, a mapping of arrays, or a Dataset (returned as is).
    `digits` is not read here: it has fixed splits (see `mpqc.splits`)."""
    if isinstance(spec, Dataset):
        return spec
    if isinstance(spec, Mapping):
        return _from_mapping(dict(spec), "<arrays>")
    text = os.fspath(spec)
    path = Path(text)
    if text.endswith(".npz") or path.is_file() or path.is_dir():
        return _from_npz(path)
    if ":" in text:
        return _from_callable(text)
    raise DataError(f"unknown data {text!r}; use 'digits', a .npz file or module:function")


def to_dataset(raw: RawData | Dataset, specs: Sequence[InputSpec]) -> Dataset:
    """Check every array against the model's inputs (names, rank, fixed dims, dtype, finite
    values), move batch axes first, and check the labels' shape."""
    if isinstance(raw, Dataset):
        raw = RawData(dict(raw.inputs), raw.labels, raw.name)  # already sample-first
        moved = False
    else:
        moved = True
    names = [s.name for s in specs]
    missing = [n for n in names if n not in raw.arrays]
    if missing:
        raise DataError(f"data {raw.name} has no array for model input(s) {missing}; it has {sorted(raw.arrays)}")
    fixed: dict[str, np.ndarray] = {}
    unbatched: dict[str, np.ndarray] = {}
    for spec in specs:
        array = raw.arrays[spec.name]
        if not spec.batched:  # one value for every run: given once, or once per sample (all equal)
            unbatched[spec.name] = _one_value(array, spec, raw.name)
            continue
        if spec.shape is not None and array.ndim != len(spec.shape):
            raise DataError(
                f"data {raw.name}: input {spec.name} has {array.ndim} dimensions {tuple(array.shape)}, the model "
                f"expects {len(spec.shape)}: {spec.describe()}"
            )
        if moved and spec.batch_axis:
            array = np.moveaxis(array, spec.batch_axis, 0)
        want = spec.sample_shape()
        if want is not None and any(d is not None and d != a for d, a in zip(want, array.shape[1:])):
            raise DataError(
                f"data {raw.name}: input {spec.name} has samples of shape {tuple(array.shape[1:])}, the model "
                f"expects {tuple('?' if d is None else d for d in want)} ({spec.describe()})"
            )
        if array.dtype.kind != spec.dtype.kind and not (array.dtype.kind in "iu" and spec.dtype.kind in "iu"):
            raise DataError(
                f"data {raw.name}: input {spec.name} has dtype {array.dtype}, the model expects {spec.dtype}"
            )
        array = np.ascontiguousarray(array.astype(spec.dtype, copy=False))
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            raise DataError(f"data {raw.name}: input {spec.name} contains NaN or Inf")
        fixed[spec.name] = array
    lengths = {name: len(a) for name, a in fixed.items()}
    if not lengths:
        raise DataError(f"data {raw.name}: the model has no batched input to count samples by")
    if len(set(lengths.values())) > 1:
        raise DataError(f"data {raw.name}: inputs differ in sample count {lengths}")
    count = next(iter(lengths.values()))
    for name, value in unbatched.items():
        fixed[name] = np.broadcast_to(value, (count, *value.shape))
    if count == 0:
        raise DataError(f"data {raw.name} has no samples")
    labels = raw.labels
    if labels is not None:
        if labels.ndim not in (1, 2) or len(labels) != count:
            raise DataError(
                f"data {raw.name}: labels must be a 1-D array of class indices (or one-hot rows), one per sample; "
                f"got shape {tuple(labels.shape)} for {count} samples"
            )
    return Dataset(fixed, labels, raw.name)


def _one_value(array: np.ndarray, spec: InputSpec, where: str) -> np.ndarray:
    """The single value of an unbatched input, in its dtype."""
    rank = len(spec.shape) if spec.shape is not None else array.ndim
    if array.ndim == rank + 1:  # one per sample: they must agree
        if len(array) == 0 or not np.all(array == array[:1]):
            raise DataError(
                f"data {where}: input {spec.name} is not batched (a scalar in the model); every sample must give "
                "it the same value"
            )
        array = array[0]
    if array.ndim != rank:
        raise DataError(
            f"data {where}: input {spec.name} has shape {tuple(array.shape)}, the model expects {spec.describe()}"
        )
    if array.dtype.kind != spec.dtype.kind and not (array.dtype.kind in "iu" and spec.dtype.kind in "iu"):
        raise DataError(f"data {where}: input {spec.name} has dtype {array.dtype}, the model expects {spec.dtype}")
    return np.ascontiguousarray(array.astype(spec.dtype, copy=False))


# -- digits ------------------------------------------------------------------------------
def digits_split(split: str) -> tuple[np.ndarray, np.ndarray]:
    """The fixed digits splits: images (N, 8, 8) scaled to [0, 1] and labels."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = (bunch.images / 16.0).astype(np.float32)
    labels = bunch.target.astype(np.int64)
    order = np.random.RandomState(0).permutation(len(images))
    test = order[:_DIGITS_TEST]
    validation = order[_DIGITS_TEST : _DIGITS_TEST + _DIGITS_VALIDATION]
    train = order[_DIGITS_TEST + _DIGITS_VALIDATION :]
    chosen = {"test": test, "validation": validation, "train": train, "calibration": train[:_DIGITS_CALIBRATION]}
    return images[chosen[split]], labels[chosen[split]]


def adapt_digits(specs: Sequence[InputSpec], split: str) -> Dataset:
    """Shape the 8x8 digits for the model: (N,C,H,W) images resized bilinearly with the
    channel repeated, (N,64) flat vectors, or (N,8,8) as 8 tokens of 8 features."""
    float_inputs = [s for s in specs if s.dtype.kind == "f"]
    if len(specs) != 1 or len(float_inputs) != 1 or specs[0].shape is None or specs[0].batch_axis != 0:
        raise DataError(
            "digits data fits models with one float input of known rank; give --data file.npz or module:function"
        )
    spec = specs[0]
    images, labels = digits_split(split)
    shape = spec.shape
    assert shape is not None
    if len(shape) == 4 and isinstance(shape[2], int) and isinstance(shape[3], int) and isinstance(shape[1], int):
        x = _resize(images, shape[2], shape[3])[:, None].repeat(shape[1], axis=1)
    elif len(shape) == 2 and shape[1] in (None, 64):
        x = images.reshape(len(images), 64)
    elif len(shape) == 3 and shape[1] in (None, 8) and shape[2] in (None, 8):
        x = images
    else:
        raise DataError(f"digits data cannot be shaped to input {spec.describe()}; give --data file.npz")
    return Dataset({spec.name: np.ascontiguousarray(x, dtype=spec.dtype)}, labels, f"digits/{split}")


def _resize(images: np.ndarray, height: int, width: int) -> np.ndarray:
    if (height, width) == images.shape[1:]:
        return images
    from scipy.ndimage import zoom

    factors = (1.0, height / images.shape[1], width / images.shape[2])
    return zoom(images, factors, order=1, mode="nearest", grid_mode=True).astype(np.float32)


# -- files and user code -----------------------------------------------------------------
def _from_npz(path: Path) -> RawData:
    if path.is_dir():
        raise DataError(f"data path {path} is a folder; give an .npz file")
    if not path.is_file():
        raise DataError(f"data file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {k: archive[k] for k in archive.files}
    except Exception as exc:  # zipfile, pickle refusal, truncated members, ...
        raise DataError(f"cannot read data file {path}: {first_line(exc)}") from None
    return _from_mapping(arrays, str(path))


def _from_mapping(arrays: dict[str, Any], name: str) -> RawData:
    batch_axes = _batch_axes(arrays.pop(BATCH_AXES_KEY, None), name)
    labels = arrays.pop("labels", None)
    if not arrays:
        raise DataError(f"data {name} holds no input arrays")
    out: dict[str, np.ndarray] = {}
    for key, value in arrays.items():
        array = np.asarray(value)
        if array.dtype.kind not in "biuf":
            raise DataError(f"data {name}: array {key} has dtype {array.dtype}; inputs are numbers or booleans")
        out[str(key)] = array
    label_array = None
    if labels is not None:
        label_array = np.asarray(labels)
        if label_array.dtype.kind not in "biuf":
            raise DataError(f"data {name}: labels have dtype {label_array.dtype}; use integer class indices")
    return RawData(out, label_array, name, batch_axes)


def _batch_axes(value: Any, name: str) -> dict[str, int]:
    if value is None:
        return {}
    entries = np.asarray(value).ravel().tolist()
    axes: dict[str, int] = {}
    for entry in entries:
        text = str(entry)
        key, sep, axis = text.partition("=")
        if not sep or not key or not axis.strip().lstrip("-").isdigit():
            raise DataError(f"data {name}: {BATCH_AXES_KEY} entries are 'input=axis', got {text!r}")
        axes[key.strip()] = int(axis)
    return axes


def _from_callable(target: str) -> RawData:
    module_name, _, func_name = target.partition(":")
    if not module_name or not func_name:
        raise UserCodeError(f"data {target!r}: expected module:function")
    cwd = os.getcwd()
    added = cwd not in sys.path
    if added:
        sys.path.insert(0, cwd)  # as `python -m` does: a module in the current folder is importable
    try:
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:
            raise UserCodeError(
                f"cannot import data module {module_name!r}: {type(exc).__name__}: {first_line(exc)}"
            ) from None
        func = getattr(module, func_name, None)
        if func is None:
            raise UserCodeError(f"data module {module_name!r} has no function {func_name!r}")
        if not callable(func):
            raise UserCodeError(f"{target} is a {type(func).__name__}, not a function")
        try:
            produced = func()
        except Exception as exc:
            raise UserCodeError(f"your data function {target} raised {type(exc).__name__}: {first_line(exc)}") from None
    finally:
        if added and cwd in sys.path:
            sys.path.remove(cwd)
    if isinstance(produced, Dataset):
        return RawData(dict(produced.inputs), produced.labels, target)
    if isinstance(produced, Mapping):
        return _from_mapping(dict(produced), target)
    if produced is None or isinstance(produced, str | bytes | int | float | np.ndarray):
        raise DataError(
            f"{target} returned {type(produced).__name__}; it must return a dict of arrays or an iterable of such dicts"
        )
    try:
        batches = list(produced)
    except TypeError:
        raise DataError(
            f"{target} returned {type(produced).__name__}; it must return a dict of arrays or an iterable of such dicts"
        ) from None
    except Exception as exc:
        raise UserCodeError(
            f"your data function {target} raised {type(exc).__name__} while iterating: {first_line(exc)}"
        ) from None
    if not batches or not all(isinstance(b, Mapping) for b in batches):
        raise DataError(f"{target} must return a dict of arrays or a non-empty iterable of such dicts")
    keys = set(batches[0])
    if any(set(b) != keys for b in batches):
        raise DataError(f"{target}: the batches it yields have different keys")
    try:
        merged = {k: np.concatenate([np.asarray(b[k]) for b in batches]) for k in keys}
    except ValueError as exc:
        raise DataError(f"{target}: its batches cannot be joined: {first_line(exc)}") from None
    return _from_mapping(merged, target)
