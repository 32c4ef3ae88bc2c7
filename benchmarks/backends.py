"""Backend forms on the real-model kit and a BERT encoder: each model quantized uniformly in
the form each backend loads, checked against that backend's rules (OpenVINO: compiled by
it), with its label-free quality on the kit's test set in ONNX Runtime and, for the
OpenVINO form, the cosine between OpenVINO's and ONNX Runtime's outputs of the same file.

    python benchmarks/backends.py [NAME ...]   # needs `make realkit`, openvino, transformers;
                                               # NAMEs: kit models and/or bert (default: all)
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from mpqc.models.hf_encoder import TINY, export_bert

import mpqc
from mpqc.quality import mean_cosine
from mpqc.realkit import kit_models
from mpqc.runtime import make_session

FORMS = [("ort", "w8a8"), ("tensorrt", "w8a8"), ("tensorrt", "w4nb"), ("qnn", "w8a8"), ("qnn", "w8a16")]
FORMS += [("openvino", "w8a8"), ("openvino", "w8af")]


def _openvino_agreement(path: Path, test: Path) -> float:
    """Cosine between OpenVINO's and ONNX Runtime's first output on 16 test samples."""
    import openvino as ov

    feed = {k: v[:16] for k, v in np.load(test).items() if not k.startswith("__")}
    session = make_session(path.read_bytes())  # one sample per run: some kit models have batch 1
    core = ov.Core()
    compiled = core.compile_model(core.read_model(str(path)), "CPU")
    ort_out = np.concatenate([session.run(None, {k: v[i : i + 1] for k, v in feed.items()})[0] for i in range(16)])
    ov_out = np.concatenate([compiled({k: v[i : i + 1] for k, v in feed.items()})[0] for i in range(16)])
    return mean_cosine([ov_out], [ort_out])


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="mpqc_backends_"))
    wanted = set(sys.argv[1:])
    models = [(k.name, k.model, k.calib, k.test) for k in kit_models() if not wanted or k.name in wanted]
    if not wanted or "bert" in wanted:
        bert, calib, test = export_bert(work / "bert", TINY)
        models.append(("bert_tiny (random init)", bert, calib, test))
    print("| model | backend | scheme | quality (test) | measure | rules broken | OpenVINO vs ORT cosine | s |")
    print("|---|---|---|---|---|---|---|---|")
    for name, model, calib_path, test_path in models:
        for backend, label in FORMS:
            out = work / f"{Path(str(model)).stem}_{backend}_{label}.onnx"
            start = time.perf_counter()
            try:
                result = mpqc.quantize(
                    model, label, calib_path, val_data=calib_path, test_data=test_path, output=out, backend=backend
                )
            except mpqc.MpqcError as exc:
                print(f"| {name} | {backend} | {label} | refused: {exc} | | | | |")
                continue
            broken = len(mpqc.validate(out, backend))
            q = result.quant_eval
            assert q is not None
            agree = f"{_openvino_agreement(out, Path(test_path)):.4f}" if backend == "openvino" else "-"
            seconds = time.perf_counter() - start
            print(
                f"| {name} | {backend} | {result.scheme.summary()} | {q.quality:.4f} | {q.measure} | {broken} "
                f"| {agree} | {seconds:.0f} |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
