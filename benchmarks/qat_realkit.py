"""Label-free QAT on the real-model kit: PTQ vs QAT fidelity at w8a8 and w4a8 per model, with
seeds, and seconds per QAT epoch. Training data: 48 of the kit's calibration samples (the
other 16 validate: the best checkpoint, and PTQ kept when QAT does not beat it); reported on
the kit's 32 test samples. Loss: distillation from the float model (no labels are used).

    python benchmarks/qat_realkit.py [--epochs 2] [--seeds 0,1] [--batch-size 8] [--models ...] [--schemes w8a8,w4a8]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import table  # noqa: E402

import mpqc  # noqa: E402
from mpqc.realkit import kit_models  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--models", default="")
    parser.add_argument("--schemes", default="w8a8,w4a8")
    parser.add_argument("--batch-size", type=int, default=8, help="48 samples: 6 steps an epoch")
    args = parser.parse_args()
    kits = [k for k in kit_models() if not args.models or k.name in args.models.split(",")]
    if not kits:
        sys.exit("the real-model kit is absent: run bash ../shared/realkit/prepare.sh (or make realkit)")
    seeds = [int(s) for s in args.seeds.split(",")]
    rows = [
        [
            "model",
            "scheme",
            "measure",
            "PTQ val",
            "QAT val (seeds)",
            "PTQ test",
            "QAT test (seeds)",
            "QAT - PTQ test",
            "kept PTQ",
            "s/epoch",
        ]
    ]
    start = time.perf_counter()
    for kit in kits:
        for scheme in args.schemes.split(","):
            runs = []
            for seed in seeds:
                config = mpqc.QatConfig(epochs=args.epochs, seed=seed, batch_size=args.batch_size)
                runs.append(mpqc.qat(kit.model, scheme, kit.calib, test_data=kit.test, config=config))
                print(
                    f"[qat] {kit.name} {scheme} seed {seed}: {runs[-1].training} ({time.perf_counter() - start:.0f}s)",
                    file=sys.stderr,
                    flush=True,
                )
            first = runs[0]
            qat_val = [r.qat_validation.quality for r in runs]
            qat_test = [r.qat_eval.quality for r in runs]
            gain = [r.qat_eval.quality - r.ptq_eval.quality for r in runs]
            rows.append(
                [
                    kit.name,
                    scheme,
                    first.qat_eval.measure,
                    f"{first.ptq_validation.quality:.4f}",
                    " ".join(f"{v:.4f}" for v in qat_val),
                    f"{first.ptq_eval.quality:.4f}",
                    " ".join(f"{v:.4f}" for v in qat_test),
                    f"{np.mean(gain):+.4f} [{min(gain):+.4f}, {max(gain):+.4f}]",
                    f"{sum(r.kept_ptq for r in runs)}/{len(runs)}",
                    f"{np.mean([r.seconds_per_epoch for r in runs]):.1f}",
                ]
            )
    print(table(rows))
    print(
        f"\n{args.epochs} epochs, batch {args.batch_size}, seeds {args.seeds}; val = the 16 validation samples"
        " QAT chose on, test = the kit's 32"
        " test samples; QAT - PTQ test: mean over seeds [min, max]"
    )


if __name__ == "__main__":
    main()
