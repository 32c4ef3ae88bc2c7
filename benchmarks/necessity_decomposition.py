"""Does a scheme's PTQ loss, split into what its weights and what its activations cost,
rank QAT necessity better than the loss itself (rule (a))? Issue 11 asks for a per-scheme
signal beyond PTQ loss; this measures one that costs two extra PTQ evaluations, on the
records of a saved `mpqc necessity --validate N --seeds K` run (nothing is trained here):

    python benchmarks/necessity_decomposition.py necessity.json model.onnx calib.npz test.npz [--widths 4,8]

For each held-out scheme it evaluates the same scheme with activations in float (weights
only, `wXaf`) and with weights in float (activations only, `wfaY`), with the workload and
recipe the necessity run used (same splits, validation quality, `auto` choices made for
`--widths`: 2,4,8 since the run resolves every width its held-out schemes use; runs
before that resolved only `--bits`, e.g. 4,8), and checks its PTQ quality against the
record. Signals, each against the seed-averaged N (Spearman, bootstrap 95% interval
of the difference to rule (a) over schemes):

- rule (a): float - PTQ
- weight part given activations: PTQ(activations only) - PTQ (what adding the weights costs)
- activation part: float - PTQ(activations only)
- weights alone: float - PTQ(weights only)
- two-part share: N = kw * weight part + ka * activation part, fitted (non-negative least
  squares) on the first quarter of the schemes' first-seed QAT runs, as compile's learned
  share is; scored on the other schemes only.
- split_share: what `necessity --validate` now reports (`SplitRecoveryModel`: the shares
  of the two parts that QAT leaves unrecovered, held towards the one-share kappa), fitted
  and scored the same way.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from scipy.optimize import nnls
from scipy.stats import spearmanr

from mpqc.emit import emit
from mpqc.necessity_eval import SchemeRecord, paid_count, split_share
from mpqc.recovery import LossSplit
from mpqc.scheme import Scheme
from mpqc.workload import Workload


def _weights_only(label: str) -> str:
    return label if label == "float" else label[: label.index("a")] + "af"


def _activations_only(label: str) -> str:
    return label if label == "float" else "wf" + label[label.index("a") :]


def _rho(a: np.ndarray, b: np.ndarray) -> float:
    return float(spearmanr(a, b)[0])


def _interval(signal: np.ndarray, rule: np.ndarray, truth: np.ndarray, seed: int = 1) -> tuple[float, float, float]:
    rng = np.random.default_rng(seed)
    n = len(truth)
    diffs = []
    for _ in range(2000):
        i = rng.integers(0, n, n)
        if len(set(i.tolist())) < 3:
            continue
        diffs.append(_rho(signal[i], truth[i]) - _rho(rule[i], truth[i]))
    low, high = np.nanpercentile(diffs, [2.5, 97.5])
    return _rho(signal, truth) - _rho(rule, truth), float(low), float(high)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("records")
    parser.add_argument("model")
    parser.add_argument("data")
    parser.add_argument("test_data")
    parser.add_argument("--metric", default="cosine")
    parser.add_argument("--widths", default="2,4,8", help="widths whose auto choices the run made")
    args = parser.parse_args()
    widths = {int(w) for w in args.widths.split(",")}
    saved = json.loads(Path(args.records).read_text())
    records = saved["validation"]["records"]
    workload = Workload.build(args.model, args.data, test_data=args.test_data, metric=args.metric)
    names = workload.prepared.analysis.layer_names
    recipe = workload.resolve_recipe({8, *widths}, widths)

    def quality(layers: dict[str, str]) -> float:
        scheme = Scheme.from_json({"layers": layers}, names)
        payload = emit(workload.prepared, scheme, workload.calibration, recipe, check=True).payload()
        return workload.evaluate(payload, "validation").quality

    ptq, weights, acts, check = [], [], [], []
    for i, record in enumerate(records, 1):
        layers = record["scheme"]
        check.append(quality(layers))
        weights.append(quality({k: _weights_only(v) for k, v in layers.items()}))
        acts.append(quality({k: _activations_only(v) for k, v in layers.items()}))
        ptq.append(record["ptq"])
        print(f"[decomposition] {i}/{len(records)}", file=sys.stderr, flush=True)
    f = np.array([r["float"] for r in records])
    p, qw, qa = np.array(ptq), np.array(weights), np.array(acts)
    qat = np.array([r["qat"] for r in records])
    truth, first = qat.mean(axis=1) - p, qat[:, 0] - p
    rule, weight_part, act_part = f - p, qa - p, f - qa
    seeds = qat.shape[1]
    ceiling = np.mean([_rho(qat[:, s] - p, np.delete(qat, s, axis=1).mean(axis=1) - p) for s in range(seeds)])
    paid = paid_count(len(records))
    design = np.stack([weight_part, act_part], axis=1)
    k, _ = nnls(design[:paid], first[:paid])
    two_part = np.clip(design @ k, 0.0, np.maximum(rule, 0.0))
    scored = [
        SchemeRecord(r["scheme"], r["float"], r["ptq"], tuple(r["qat"]), {}, LossSplit.of(r["float"], r["ptq"], a))
        for r, a in zip(records, acts)
    ]
    model = split_share(scored, float(saved["validation"]["tolerance"]), paid=paid)
    split = np.array([prediction.necessity for prediction in model])
    held = slice(paid, None)
    print(f"model {Path(args.model).name}: {len(records)} schemes, {seeds} seeds, seed ceiling {ceiling:.3f}")
    print(f"PTQ re-evaluated vs record: max |diff| {np.max(np.abs(np.array(check) - p)):.4f}")
    print("| signal | schemes | Spearman | vs rule (a) [95% CI] |")
    print("|---|---|---|---|")
    for name, signal, part in (
        ("rule (a) float - PTQ", rule, slice(None)),
        ("weight part: PTQ(acts only) - PTQ", weight_part, slice(None)),
        ("activation part: float - PTQ(acts only)", act_part, slice(None)),
        ("weights alone: float - PTQ(weights only)", f - qw, slice(None)),
        ("rule (a), held out", rule, held),
        (f"two-part share, NNLS on N (kw {k[0]:.2f}, ka {k[1]:.2f}), held out", two_part, held),
        ("split_share (mpqc.recovery.SplitRecoveryModel), held out", split, held),
    ):
        d, low, high = _interval(signal[part], rule[part], truth[part])
        count = len(truth[part])
        print(f"| {name} | {count} | {_rho(signal[part], truth[part]):.3f} | {d:+.3f} [{low:+.3f}, {high:+.3f}] |")
    mae = [np.mean(np.abs(x[held] - truth[held])) * 100 for x in (rule, two_part, split)]
    print(f"held-out MAE: rule (a) {mae[0]:.2f} pts, two-part NNLS {mae[1]:.2f} pts, split_share {mae[2]:.2f} pts")


if __name__ == "__main__":
    main()
