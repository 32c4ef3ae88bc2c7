"""QAT: start from the PTQ state of a scheme, fine-tune with quantization in the loop
(labels, or label-free distillation from the float model), write the result back as a
QDQ model and evaluate it in ONNX Runtime."""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
import onnx_ir as ir
import torch

from mpqc.api import DataLike, ModelLike, Prepared, calibrate_model, emit_qdq, prepare
from mpqc.calibrate import Calibration
from mpqc.data import Dataset, load_data
from mpqc.errors import MpqcError
from mpqc.evaluate import Evaluation, collect_outputs, evaluate_session
from mpqc.modelio import atomic_write_bytes
from mpqc.qat.graph import TrainableGraph
from mpqc.runtime import input_specs, make_session
from mpqc.scheme import Scheme

__all__ = ["QatConfig", "QatResult", "qat", "train_scheme"]


@dataclass(frozen=True)
class QatConfig:
    epochs: int = 3
    lr: float = 1e-4
    #: learning rate of the quantizer scales, relative to `lr`
    scale_lr_factor: float = 10.0
    batch_size: int = 64
    seed: int = 0
    #: "auto": labels when the data has them, else distillation from the float model
    loss: str = "auto"
    progress: bool = False

    def __post_init__(self) -> None:
        if self.epochs < 0 or self.batch_size < 1 or not self.lr > 0:
            raise MpqcError("QAT needs epochs >= 0, batch size >= 1 and a positive learning rate")
        if self.loss not in ("auto", "labels", "distill"):
            raise MpqcError(f"unknown QAT loss {self.loss!r}; use auto, labels or distill")


@dataclass
class QatResult:
    model: onnx.ModelProto
    scheme: Scheme
    ptq_eval: Evaluation
    qat_eval: Evaluation
    torch_top1: float | None
    loss: str
    seconds: float
    seconds_per_epoch: float
    losses: list[float] = field(default_factory=list)
    output: str | None = None

    @property
    def necessity(self) -> float | None:
        if self.qat_eval.top1 is None or self.ptq_eval.top1 is None:
            return None
        return self.qat_eval.top1 - self.ptq_eval.top1

    def to_json(self) -> dict[str, Any]:
        return {
            "scheme": self.scheme.summary(),
            "ptq": self.ptq_eval.to_json(),
            "qat": self.qat_eval.to_json(),
            "torch_top1": self.torch_top1,
            "necessity": self.necessity,
            "loss": self.loss,
            "seconds": self.seconds,
            "seconds_per_epoch": self.seconds_per_epoch,
            "losses": self.losses,
            "output": self.output,
        }


def train_scheme(
    prepared: Prepared,
    scheme: Scheme,
    calibration: Calibration,
    train: Dataset,
    config: QatConfig,
    teacher: np.ndarray | None = None,
) -> tuple[ir.Model, TrainableGraph, list[float], float]:
    """The PTQ graph of `scheme`, trained; returns (QDQ model, module, epoch losses, s/epoch)."""
    qdq = emit_qdq(prepared, scheme, calibration).model
    weights = {
        name: v.const_value.numpy()
        for name, v in prepared.model.graph.initializers.items()
        if v.const_value is not None and v.const_value.dtype == ir.DataType.FLOAT
    }
    module = TrainableGraph(qdq, weights)
    use_labels = teacher is None
    if use_labels and train.labels is None:
        raise MpqcError("QAT with labels needs data with labels; use loss=distill for label-free training")
    deterministic = torch.are_deterministic_algorithms_enabled()
    torch.manual_seed(config.seed)
    torch.use_deterministic_algorithms(True)
    try:
        scales = [p for name, p in module.quantizers.named_parameters()]
        optimizer = torch.optim.Adam(
            [
                {"params": list(module.params.parameters()), "lr": config.lr},
                {"params": scales, "lr": config.lr * config.scale_lr_factor},
            ]
        )
        inputs = [torch.from_numpy(np.asarray(train.inputs[name])) for name in module.input_names]
        labels = torch.from_numpy(np.asarray(train.labels)).long() if use_labels else None
        targets = None if teacher is None else torch.from_numpy(np.asarray(teacher, np.float32))
        generator = torch.Generator().manual_seed(config.seed)
        losses: list[float] = []
        start = time.perf_counter()
        module.train()
        steps = range(config.epochs)
        bar = _progress(config, len(train))
        for _ in steps:
            order = torch.randperm(len(train), generator=generator)
            total, count = 0.0, 0
            for begin in range(0, len(train), config.batch_size):
                idx = order[begin : begin + config.batch_size]
                out = module(*[x[idx] for x in inputs])
                if labels is not None:
                    loss = torch.nn.functional.cross_entropy(out.reshape(len(idx), -1), labels[idx])
                else:
                    assert targets is not None
                    loss = _distill(out, targets[idx])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                total += float(loss.detach()) * len(idx)
                count += len(idx)
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
    return qdq, module, losses, per_epoch


def _distill(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """KL divergence to the float model's softmax for class outputs; MSE otherwise."""
    s, t = student.reshape(len(student), -1), teacher.reshape(len(teacher), -1)
    if s.shape[1] > 1:
        return torch.nn.functional.kl_div(torch.log_softmax(s, 1), torch.softmax(t, 1), reduction="batchmean")
    return torch.nn.functional.mse_loss(s, t)


def _progress(config: QatConfig, samples: int) -> Any:
    if not config.progress:
        return None
    try:
        from tqdm import tqdm
    except ImportError:  # progress is a nicety
        return None
    return tqdm(
        total=samples * config.epochs,
        unit="sample",
        desc="QAT",
        file=sys.stderr,
        leave=False,
        disable=not sys.stderr.isatty() and not os.environ.get("MPQC_PROGRESS"),
    )


def torch_top1(module: TrainableGraph, data: Dataset, batch_size: int = 256) -> float | None:
    if data.labels is None:
        return None
    inputs = [torch.from_numpy(np.asarray(data.inputs[name])) for name in module.input_names]
    correct = 0
    with torch.no_grad():
        for begin in range(0, len(data), batch_size):
            out = module(*[x[begin : begin + batch_size] for x in inputs])
            pred = out.reshape(out.shape[0], -1).argmax(1).numpy()
            correct += int((pred == data.labels[begin : begin + batch_size]).sum())
    return correct / len(data)


def qat(
    model: ModelLike | Prepared,
    scheme: str | dict[str, Any] | Scheme = "w4a4",
    data: DataLike = None,
    *,
    config: QatConfig | None = None,
    calibration: Calibration | None = None,
    eval_split: str = "test",
    output: str | os.PathLike[str] | None = None,
) -> QatResult:
    """PTQ then QAT of one scheme; both evaluated in ONNX Runtime on `eval_split`."""
    config = config or QatConfig()
    start = time.perf_counter()
    prepared = prepare(model)
    if not prepared.analysis.layers:
        raise MpqcError("no quantizable layer in the model")
    bound = Scheme.parse(scheme, prepared.analysis.layer_names)
    specs = input_specs(prepared.model)
    train = load_data(data, specs, "train")
    evaluation = load_data(data, specs, eval_split)
    calibration = calibration or calibrate_model(prepared, data)
    loss = config.loss if config.loss != "auto" else ("labels" if train.labels is not None else "distill")
    float_session = make_session(prepared.model)
    teacher = collect_outputs(float_session, train) if loss == "distill" else None
    reference = collect_outputs(float_session, evaluation)
    ptq_proto = ir.serde.serialize_model(emit_qdq(prepared, bound, calibration).model)
    ptq_eval = evaluate_session(make_session(ptq_proto), evaluation, reference)
    qdq, module, losses, per_epoch = train_scheme(prepared, bound, calibration, train, config, teacher)
    proto = ir.serde.serialize_model(qdq)
    payload = proto.SerializeToString()
    qat_eval = evaluate_session(make_session(payload), evaluation, reference)
    result = QatResult(
        proto,
        bound,
        ptq_eval,
        qat_eval,
        torch_top1(module, evaluation),
        loss,
        time.perf_counter() - start,
        per_epoch,
        losses,
    )
    if output is not None:
        result.output = str(atomic_write_bytes(output, payload))
    return result
