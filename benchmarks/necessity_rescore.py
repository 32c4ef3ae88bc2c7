"""Score the predictors of a saved `mpqc necessity --validate N --seeds K --json` result again
from its records alone (float, PTQ, QAT per seed, each predictor's N), adding the fitted
predictors (learned share; with the PTQ loss split, the split share and the weight part),
scored on all schemes and on those after the paid ones, with how each ranks the QAT
quality itself: anyone can recompute the comparison without training anything.

    python benchmarks/necessity_rescore.py necessity.json [more.json ...] [noise] [bootstrap seed]

Several files (validations of the same model with other `--seed`s) are pooled: their
records are scored as one set, the fitted predictors learning from the first quarter of
the pooled records.
"""

import dataclasses
import json
import sys

from mpqc.necessity_eval import (
    SchemeRecord,
    compare_predictors,
    interval_scores,
    learned_share,
    paid_count,
    split_share,
    weight_part,
)
from mpqc.necessity_run import comparison_lines
from mpqc.recovery import LossSplit

FIXED = ("rule_a", "kappa_only", "per_layer_sum", "rule_minus_probes", "short_qat")

files = [a for a in sys.argv[1:] if a.endswith(".json")]
numbers = [a for a in sys.argv[1:] if not a.endswith(".json") and not a.startswith("--")]
validations = [json.load(open(f))["validation"] for f in files]
tol = validations[0]["tolerance"]
if any(v["tolerance"] != tol for v in validations):
    sys.exit("the files were validated with different tolerances: pool only like with like")
recs = []
for r in (r for v in validations for r in v["records"]):
    pred = {k: r[k] for k in FIXED if k in r}
    pred["predictor"] = r["predicted_n"]
    split = LossSplit(r["ptq_loss_weights"], r["ptq_loss_activations"]) if "ptq_loss_weights" in r else None
    if split is not None:
        pred["weight_part"] = weight_part(split)
    recs.append(SchemeRecord(r["scheme"], r["float"], r["ptq"], tuple(r["qat"]), pred, split))
noise = float(numbers[0]) if numbers else 0.0
seed = int(numbers[1]) if len(numbers) > 1 else 1
ls = learned_share(recs, tol, noise)
fitted = {"learned_share": [p.necessity for p in ls]}
if all(r.split is not None for r in recs):
    fitted["split_share"] = [p.necessity for p in split_share(recs, tol, noise)]
recs = [
    dataclasses.replace(r, predicted={**r.predicted, **{k: fitted[k][i] for k in fitted}}) for i, r in enumerate(recs)
]
c = compare_predictors(recs, tol, seed=seed)
c["learned_share_intervals"] = interval_scores(recs, ls, tol)
paid = paid_count(len(recs))
c["held_out"] = {"paid": paid, **compare_predictors(recs[paid:], tol, seed=seed)}
print("\n".join(comparison_lines(c)))
if "--json" in sys.argv:
    print(json.dumps(c, indent=2))
