"""mpqc compile (oracle-driven QAT) against three baselines, in one run:
(a) uniform PTQ at the best uniform scheme that fits, (b) the same search with QAT for
every fitting candidate (always-QAT), (c) the same search with no QAT (never-QAT).

    python benchmarks/search_vs_baselines.py [--models digits_cnn,mobilenetv2]

Probes and sensitivity are computed once per model and search space and shared by the
three policies through the cache (the first policy run pays for them; its wall time
includes them, the others' do not, which the table states)."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import table  # noqa: E402
from mpqc.models import zoo_path  # noqa: E402

from mpqc.api import compile as compile_model  # noqa: E402
from mpqc.compiler import CompileOptions  # noqa: E402

CONFIGS = {
    "digits_cnn": [
        ("bitserial", "latency=0.5x"),
        ("bitserial", "latency=0.35x"),
        ("mcu", "size=0.5x"),
        ("mcu", "size=0.35x"),
    ],
    # MobileNetV2's cheapest bitserial scheme is 0.42x int8 (depthwise layers are traffic-bound)
    "mobilenetv2": [("bitserial", "latency=0.6x"), ("mcu", "size=0.35x")],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", default="digits_cnn,mobilenetv2")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    rows = [
        [
            "model",
            "target",
            "budget",
            "uniform PTQ",
            "never-QAT",
            "always-QAT (runs, s)",
            "mpqc (runs, s)",
            "mpqc - always",
            "QAT runs saved",
        ]
    ]
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["MPQC_CACHE_DIR"] = str(Path(tmp) / "cache")
        for name in args.models.split(","):
            for target, budget in CONFIGS.get(name, CONFIGS["digits_cnn"]):
                results = {}
                for policy in ("predicted", "always", "never"):
                    options = CompileOptions(qat_policy=policy, workers=args.workers, progress=False)
                    out = Path(tmp) / f"{name}-{target}-{budget}-{policy}"
                    start = time.perf_counter()
                    result = compile_model(zoo_path(name), budget, target, None, out, options)
                    results[policy] = (result, time.perf_counter() - start)
                oracle, oracle_s = results["predicted"]
                always, always_s = results["always"]
                never, _ = results["never"]
                uniform = [
                    c for c in oracle.candidates if c.fits and c.origin.startswith("uniform") and c.ptq is not None
                ]
                best_uniform = max(uniform, key=lambda c: c.ptq) if uniform else None
                saved = 1 - oracle.qat_runs / always.qat_runs if always.qat_runs else 0.0
                rows.append(
                    [
                        name,
                        target,
                        budget,
                        "-"
                        if best_uniform is None
                        else f"{100 * best_uniform.ptq:.2f} ({best_uniform.scheme.summary()})",
                        f"{100 * never.winner.quality:.2f}",
                        f"{100 * always.winner.quality:.2f} ({always.qat_runs}, {always_s:.0f})",
                        f"{100 * oracle.winner.quality:.2f} ({oracle.qat_runs}, {oracle_s:.0f})",
                        f"{100 * (oracle.winner.quality - always.winner.quality):+.2f}",
                        f"{100 * saved:.0f}%",
                    ]
                )
                print(table(rows), flush=True)
    print(
        "\naccuracy: validation top-1 (%) in ONNX Runtime of the emitted winner; QAT 3 epochs, probes 1 epoch;"
        " the oracle's run of each model's first configuration includes the probe time (shared afterwards)"
    )


if __name__ == "__main__":
    main()
