"""Could QAT adopt onnx2torch instead of mpqc's own op registry (`mpqc/training/ops/`)? For
every realkit model and zoo model, convert the graph as found and as mpqc's front end leaves
it (opset 21: the graph QAT trains), run one sample in torch and compare with ONNX Runtime.

    pip install --no-deps onnx2torch==1.5.15
    python benchmarks/onnx2torch_coverage.py

onnx2torch imports torchvision only for its NMS and RoiAlign converters, and no torchvision
wheel matches the pinned torch build; a stand-in module is put in its place when torchvision
is absent (none of these graphs has NMS or RoiAlign)."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mpqc.models import zoo_path  # noqa: E402

import mpqc  # noqa: E402
from mpqc.realkit import kit_models  # noqa: E402


def _stand_in_torchvision() -> None:
    try:
        import torchvision  # noqa: F401
    except ImportError:

        def absent(*args: object, **kwargs: object) -> None:
            raise NotImplementedError("torchvision stand-in")

        ops = types.ModuleType("torchvision.ops")
        ops.nms = ops.roi_align = ops.batched_nms = ops.box_convert = absent  # type: ignore[attr-defined]
        vision = types.ModuleType("torchvision")
        vision.ops = ops  # type: ignore[attr-defined]
        sys.modules.update({"torchvision": vision, "torchvision.ops": ops})


def main() -> None:
    _stand_in_torchvision()
    from onnx2torch import convert

    models = {k.name: (str(k.model), str(k.calib)) for k in kit_models()}
    for name in ("digits_cnn", "resnet8", "mobilenetv2", "transformer"):
        models[name] = (str(zoo_path(name)), None)
    for name, (path, data) in models.items():
        for stage in ("original", "front-end (opset 21)"):
            proto = onnx.load(path) if stage == "original" else mpqc.prepare(path).proto
            session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
            first = session.get_inputs()[0]
            if data:
                x = np.load(data)[first.name][:1]
            else:
                shape = [d if isinstance(d, int) else 1 for d in first.shape]
                x = np.random.RandomState(0).rand(*shape).astype(np.float32)
            reference = session.run(None, {first.name: x})[0]
            try:
                module = convert(proto).eval()
                with torch.no_grad():
                    out = module(torch.from_numpy(x))
                out = (out[0] if isinstance(out, tuple | list) else out).numpy()
                error = float(np.abs(out - reference).max() / (np.abs(reference).max() + 1e-12))
                print(f"{name:18s} {stage:22s} converts, max rel err {error:.2e}")
            except Exception as exc:  # noqa: BLE001 (the failure is the measurement)
                print(f"{name:18s} {stage:22s} FAILS: {type(exc).__name__}: {str(exc).splitlines()[0][:110]}")


if __name__ == "__main__":
    main()
