"""Input data for calibration and evaluation: scikit-learn's digits, an .npz file, or a
Python `module:function`. Everything is checked against the model's inputs up front."""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mpqc.errors import MpqcError
from mpqc.runtime import InputSpec

__all__ = ["Dataset", "SPLITS", "load_data", "digits_split", "adapt_digits"]

SPLITS = ("train", "calibration", "validation", "test")
_DIGITS_TEST, _DIGITS_VALIDATION, _DIGITS_CALIBRATION = 450, 300, 512


@dataclass(frozen=True)
class Dataset:
    """Arrays by model input name, first axis the sample; labels optional."""

    inputs: Mapping[str, np.ndarray]
    labels: np.ndarray | None
    name: str

    def __len__(self) -> int:
        return len(next(iter(self.inputs.values())))

    def batches(self, batch_size: int) -> Iterator[dict[str, np.ndarray]]:
        for start in range(0, len(self), batch_size):
            yield {k: v[start : start + batch_size] for k, v in self.inputs.items()}

    def take(self, count: int) -> Dataset:
        labels = None if self.labels is None else self.labels[:count]
        return Dataset({k: v[:count] for k, v in self.inputs.items()}, labels, self.name)

    def validate(self, specs: list[InputSpec]) -> Dataset:
        """Shape, dtype and finiteness checks; returns self with dtypes made exact."""
        names = [s.name for s in specs]
        missing = [n for n in names if n not in self.inputs]
        if missing:
            raise MpqcError(f"data {self.name} has no array for model input(s) {missing}; it has {sorted(self.inputs)}")
        lengths = {len(v) for v in self.inputs.values()} | ({len(self.labels)} if self.labels is not None else set())
        if len(lengths) != 1:
            raise MpqcError(f"data {self.name}: arrays differ in sample count {sorted(lengths)}")
        if len(self) == 0:
            raise MpqcError(f"data {self.name} has no samples")
        fixed: dict[str, np.ndarray] = {}
        for spec in specs:
            array = np.asarray(self.inputs[spec.name])
            if spec.shape is not None:
                if array.ndim != len(spec.shape) or any(
                    d is not None and i > 0 and d != a for i, (d, a) in enumerate(zip(spec.shape, array.shape))
                ):
                    raise MpqcError(
                        f"data {self.name}: input {spec.name} has shape {tuple(array.shape)}, model expects "
                        f"{spec.describe()}"
                    )
            if array.dtype.kind != spec.dtype.kind:
                raise MpqcError(
                    f"data {self.name}: input {spec.name} has dtype {array.dtype}, model expects {spec.dtype}"
                )
            array = array.astype(spec.dtype, copy=False)
            if array.dtype.kind == "f" and not np.isfinite(array).all():
                raise MpqcError(f"data {self.name}: input {spec.name} contains NaN or Inf")
            fixed[spec.name] = array
        return Dataset(fixed, self.labels, self.name)


def load_data(spec: str | Dataset | Mapping[str, Any] | None, specs: list[InputSpec], split: str = "test") -> Dataset:
    """`spec`: None or 'digits', a path to .npz, 'module:function', a Dataset or a mapping."""
    if split not in SPLITS:
        raise MpqcError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
    if isinstance(spec, Dataset):
        dataset = spec
    elif isinstance(spec, Mapping):
        dataset = _from_mapping(dict(spec), "<mapping>")
    elif spec is None or spec == "digits":
        dataset = adapt_digits(specs, split)
    elif str(spec).endswith(".npz") or Path(str(spec)).is_file():
        dataset = _from_npz(Path(str(spec)))
    elif ":" in str(spec):
        dataset = _from_callable(str(spec))
    else:
        raise MpqcError(f"unknown data {spec!r}; use 'digits', a .npz file or module:function")
    return dataset.validate(specs)


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


def adapt_digits(specs: list[InputSpec], split: str) -> Dataset:
    """Shape the 8x8 digits for the model: (N,C,H,W) images resized bilinearly with the
    channel repeated, (N,64) flat vectors, or (N,8,8) as 8 tokens of 8 features."""
    float_inputs = [s for s in specs if s.dtype.kind == "f"]
    if len(specs) != 1 or len(float_inputs) != 1 or specs[0].shape is None:
        raise MpqcError(
            "digits data fits models with one float input of known rank; give --data file.npz or module:function"
        )
    spec = specs[0]
    images, labels = digits_split(split)
    shape = spec.shape
    if len(shape) == 4 and all(isinstance(d, int) for d in shape[1:]):
        _, channels, height, width = shape
        x = _resize(images, height, width)[:, None].repeat(channels, axis=1)  # type: ignore[arg-type]
    elif len(shape) == 2 and shape[1] in (None, 64):
        x = images.reshape(len(images), 64)
    elif len(shape) == 3 and shape[1] in (None, 8) and shape[2] in (None, 8):
        x = images
    else:
        raise MpqcError(f"digits data cannot be shaped to input {spec.describe()}; give --data file.npz")
    return Dataset({spec.name: np.ascontiguousarray(x, dtype=spec.dtype)}, labels, f"digits/{split}")


def _resize(images: np.ndarray, height: int, width: int) -> np.ndarray:
    if (height, width) == images.shape[1:]:
        return images
    from scipy.ndimage import zoom

    factors = (1.0, height / images.shape[1], width / images.shape[2])
    return zoom(images, factors, order=1, mode="nearest", grid_mode=True).astype(np.float32)


def _from_npz(path: Path) -> Dataset:
    if not path.is_file():
        raise MpqcError(f"data file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {k: archive[k] for k in archive.files}
    except Exception as exc:
        raise MpqcError(f"cannot read data file {path}: {exc}") from exc
    return _from_mapping(arrays, str(path))


def _from_mapping(arrays: dict[str, Any], name: str) -> Dataset:
    labels = arrays.pop("labels", None)
    if not arrays:
        raise MpqcError(f"data {name} holds no input arrays")
    return Dataset({k: np.asarray(v) for k, v in arrays.items()}, None if labels is None else np.asarray(labels), name)


def _from_callable(target: str) -> Dataset:
    module_name, _, func_name = target.partition(":")
    try:
        func = getattr(importlib.import_module(module_name), func_name)
    except (ImportError, AttributeError) as exc:
        raise MpqcError(f"cannot import data function {target}: {exc}") from exc
    produced = func()
    if isinstance(produced, Dataset):
        return produced
    if isinstance(produced, Mapping):
        return _from_mapping(dict(produced), target)
    batches = list(produced)  # an iterator of batch dicts
    if not batches or not all(isinstance(b, Mapping) for b in batches):
        raise MpqcError(f"{target} must return a dict of arrays or an iterable of such dicts")
    keys = set(batches[0])
    return _from_mapping({k: np.concatenate([np.asarray(b[k]) for b in batches]) for k in keys}, target)
