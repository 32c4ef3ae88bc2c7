"""The QAT-necessity oracle against measured N on held-out schemes, with both baselines,
on the default model and the MobileNetV2-style zoo model; writes the reports (heat maps).

    python benchmarks/necessity_oracle.py [--validate 20] [--out build/necessity]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import table  # noqa: E402
from mpqc.models import zoo_path  # noqa: E402

from mpqc.necessity_run import necessity_workload, validation_table  # noqa: E402
from mpqc.workload import Workload  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--validate", type=int, default=20)
    parser.add_argument("--models", default="digits_cnn,mobilenetv2")
    parser.add_argument("--out", default="build/necessity")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    rows = [
        [
            "model",
            "probes",
            "probe s",
            "schemes",
            "validate s",
            "Spearman oracle",
            "Sp. full-recovery",
            "Sp. sum-of-probes",
            "decision oracle",
            "dec. full-rec.",
            "dec. sum",
            "QAT acc MAE pts",
        ]
    ]
    texts = []
    for name in args.models.split(","):
        start = time.perf_counter()
        result = necessity_workload(
            Workload.build(zoo_path(name)),
            validate=args.validate,
            workers=args.workers,
            report=Path(args.out) / name,
            model_name=name,
        )
        v = result.validation
        assert v is not None
        s = v.stats
        rows.append(
            [
                name,
                str(sum(len(r) for r in result.probes.table.values())),
                f"{result.probes.seconds:.0f}",
                str(len(v.schemes)),
                f"{v.seconds:.0f}",
                f"{s['spearman_oracle']:.3f}",
                f"{s['spearman_full_recovery']:.3f}",
                f"{s['spearman_sum_of_probes']:.3f}",
                f"{100 * s['decision_accuracy_oracle']:.0f}%",
                f"{100 * s['decision_accuracy_full_recovery']:.0f}%",
                f"{100 * s['decision_accuracy_sum_of_probes']:.0f}%",
                f"{100 * s['mae_qat_quality']:.2f}",
            ]
        )
        texts.append(f"== {name} ({time.perf_counter() - start:.0f} s)\n{validation_table(result)}")
    print(table(rows))
    print("\n".join(texts))
    print(
        "\nprobes: QAT 3 epochs; schemes: QAT 3 epochs; tolerance 1 point; validation split (300 samples);"
        f" {args.workers} worker processes on this machine"
    )


if __name__ == "__main__":
    main()
