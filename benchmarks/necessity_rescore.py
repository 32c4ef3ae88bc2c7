"""Score the predictors of a saved `mpqc necessity --validate N --seeds K --json` result again
from its records alone (float, PTQ, QAT per seed, each predictor's N), adding the
learned-share predictor: anyone can recompute the comparison without training anything.

    python benchmarks/necessity_rescore.py necessity.json [noise] [bootstrap seed]
"""

import json
import sys

from mpqc.necessity_eval import SchemeRecord, compare_predictors, interval_scores, learned_share
from mpqc.necessity_run import comparison_lines

d = json.load(open(sys.argv[1]))
v = d["validation"]
tol = v["tolerance"]
recs = []
for r in v["records"]:
    pred = {k: r[k] for k in ("rule_a", "kappa_only", "per_layer_sum", "rule_minus_probes", "short_qat") if k in r}
    pred["predictor"] = r["predicted_n"]
    recs.append(SchemeRecord(r["scheme"], r["float"], r["ptq"], tuple(r["qat"]), pred))
noise = float(sys.argv[2]) if len(sys.argv) > 2 else 0.0
ls = learned_share(recs, tol, noise)
recs = [
    SchemeRecord(r.scheme, r.float_quality, r.ptq, r.qat, {**r.predicted, "learned_share": p.necessity})
    for r, p in zip(recs, ls)
]
c = compare_predictors(recs, tol, seed=int(sys.argv[3]) if len(sys.argv) > 3 else 1)
c["learned_share_intervals"] = interval_scores(recs, ls, tol)
print("\n".join(comparison_lines(c)))
