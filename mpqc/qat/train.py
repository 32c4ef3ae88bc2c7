"""QAT: start from the PTQ state of a scheme, fine-tune with quantization in the loop, and
write the result back into the same QDQ graph (evaluated in ONNX Runtime by the caller).

Losses: with labels, cross-entropy on the classifier output; without, distillation from the
float model on every output (KL divergence of the class distributions for classifier-shaped
outputs, mean squared error otherwise)."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import ml_dtypes  # noqa: F401  (registers int4/int2 numpy types the IR hands over)
import numpy as np
import onnx_ir as ir
import torch

from mpqc.data import Dataset
from mpqc.emit import emit
from mpqc.errors import DataError
from mpqc.frontend import Prepared
from mpqc.qat.config import QatConfig
from mpqc.qat.graph import TrainableGraph
from mpqc.recipe import Recipe
from mpqc.runtime import Outputs, Runner
from mpqc.scheme import Scheme
from mpqc.stats import Calibration

__all__ = ["QatOutcome", "train_scheme", "resolve_loss"]


@dataclass
class QatOutcome:
    """The trained QDQ graph, the loss per epoch and the time per epoch."""

    model: ir.Model
    module: TrainableGraph
    losses: list[float] = field(default_factory=list)
    seconds_per_epoch: float = 0.0
    steps: int = 0


def resolve_loss(config: QatConfig, has_labels: bool) -> str:
    """The loss a run uses: `auto` picks labels when there are any, else distillation."""
    if config.loss == "labels" and not has_labels:
        raise DataError("QAT with labels needs data with labels; use --loss distill for label-free training")
    if config.loss != "auto":
        return config.loss
    return "labels" if has_labels else "distill"


def train_scheme(
    prepared: Prepared,
    scheme: Scheme,
    calibration: Calibration,
    recipe: Recipe,
    train: Dataset,
    layout: Runner,
    config: QatConfig,
    teacher: Outputs | None,
    classifier_output: int = 0,
) -> QatOutcome:
    """The PTQ graph of `scheme`, trained on `train`. `layout` tells how samples map to the
    model's axes (the runner that produced `teacher`, the float model's outputs on `train`)."""
    qdq = emit(prepared, scheme, calibration, recipe).model
    weights = {
        name: v.const_value.numpy()
        for name, v in prepared.model.graph.initializers.items()
        if v.const_value is not None and v.const_value.dtype == ir.DataType.FLOAT
    }
    module = TrainableGraph(qdq, weights)
    loss_kind = resolve_loss(config, train.labels is not None)
    if loss_kind == "distill" and teacher is None:
        raise ValueError("distillation needs the float model's outputs")
    previous_threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    torch.use_deterministic_algorithms(True)
    try:
        optimizer = torch.optim.Adam(
            [
                {"params": list(module.params.parameters()), "lr": config.lr},
                {"params": list(module.quantizers.parameters()), "lr": config.lr * config.scale_lr_factor},
            ]
        )
        inputs = {name: torch.from_numpy(np.asarray(train.inputs[name])) for name in module.input_names}
        labels = torch.from_numpy(np.asarray(train.labels)).long() if loss_kind == "labels" else None
        targets = None if teacher is None else [torch.from_numpy(np.asarray(t, np.float32)) for t in teacher]
        generator = torch.Generator().manual_seed(config.seed)
        micro = 1 if layout.per_sample or layout.fixed else config.batch_size
        losses: list[float] = []
        steps = 0
        start = time.perf_counter()
        module.train()
        bar = _progress(config, len(train))
        for _ in range(config.epochs):
            order = torch.randperm(len(train), generator=generator)
            total, count = 0.0, 0
            for begin in range(0, len(train), config.batch_size):
                idx = order[begin : begin + config.batch_size]
                optimizer.zero_grad()
                for part in idx.split(micro):
                    outs = _forward(module, layout, inputs, part)
                    if labels is not None:
                        scores = outs[classifier_output].reshape(len(part), -1)
                        loss = torch.nn.functional.cross_entropy(scores, labels[part])
                    else:
                        assert targets is not None
                        loss = distill_loss(outs, [t[part] for t in targets])
                    (loss * len(part) / len(idx)).backward()
                    total += float(loss.detach()) * len(part)
                    count += len(part)
                optimizer.step()
                steps += 1
                if bar is not None:
                    bar.update(len(idx))
            losses.append(total / max(count, 1))
        if bar is not None:
            bar.close()
        per_epoch = (time.perf_counter() - start) / max(config.epochs, 1)
        module.eval()
        module.write_back()
    finally:
        torch.use_deterministic_algorithms(deterministic)
        torch.set_num_threads(previous_threads)
    return QatOutcome(qdq, module, losses, per_epoch, steps)


def _forward(
    module: TrainableGraph, layout: Runner, inputs: dict[str, torch.Tensor], idx: torch.Tensor
) -> list[torch.Tensor]:
    """The module on samples `idx`, outputs sample-first (as the runner lays them out)."""
    batch = {}
    for spec in layout.specs:
        x = inputs[spec.name][idx]
        batch[spec.name] = x.movedim(0, spec.batch_axis) if spec.batch_axis else x
    outs = module(*[batch[name] for name in module.input_names])
    samples = layout.to_samples(list(outs), len(idx))
    if samples is None:
        raise DataError("QAT cannot tell which output axis holds the samples; train one sample at a time")
    return samples


def distill_loss(student: Sequence[torch.Tensor], teacher: Sequence[torch.Tensor]) -> torch.Tensor:
    """Sum over outputs: KL divergence to the float model's softmax for class scores (a vector
    per sample), mean squared error, scaled by the teacher's variance, for anything else."""
    total = torch.zeros(())
    for s, t in zip(student, teacher):
        s2, t2 = s.reshape(len(s), -1), t.reshape(len(t), -1)
        if s2.shape[1] > 1 and _is_class_vector(t):
            total = total + torch.nn.functional.kl_div(
                torch.log_softmax(s2, 1), torch.softmax(t2, 1), reduction="batchmean"
            )
        else:
            scale = t2.var().clamp_min(1e-12)
            total = total + torch.nn.functional.mse_loss(s2, t2) / scale
    return total


def _is_class_vector(t: torch.Tensor) -> bool:
    return len([d for d in t.shape[1:] if d != 1]) == 1


def _progress(config: QatConfig, samples: int) -> Any:
    if not config.progress:
        return None
    from tqdm import tqdm

    return tqdm(
        total=samples * config.epochs,
        unit="sample",
        desc="QAT",
        file=sys.stderr,
        leave=False,
        disable=not sys.stderr.isatty() and not os.environ.get("MPQC_PROGRESS"),
    )
