#!/usr/bin/env bash
# Build a wheel, install it (not editable) into a fresh virtual environment, and run the main
# commands from another folder. A module or data file missing from the wheel fails here: every
# mpqc module must be loaded from the environment, none from this source tree.
# Dependencies come from the surrounding installation (--system-site-packages); mpqc itself
# only from the wheel.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
rm -rf build/lib build/bdist.* ./*.egg-info  # setuptools reuses these: stale modules would slip into the wheel
"$PYTHON" -m pip wheel --no-deps --no-build-isolation -q -w "$work/dist" . >/dev/null
"$PYTHON" -m venv --system-site-packages "$work/venv"
"$work/venv/bin/python" -m pip install -q --no-deps "$work"/dist/mpqc-*.whl
mkdir "$work/elsewhere"
cd "$work/elsewhere"
py="$work/venv/bin/python"
"$py" - "$work/venv" <<'PY'
import importlib, pkgutil, sys
from pathlib import Path
venv = Path(sys.argv[1]).resolve()
import mpqc
names = ["mpqc"] + [m.name for m in pkgutil.walk_packages(mpqc.__path__, "mpqc.") if not m.name.endswith("__main__")]
outside = []
for name in names:
    module = importlib.import_module(name)
    if venv not in Path(module.__file__).resolve().parents:
        outside.append(f"{name} from {module.__file__}")
assert not outside, "not from the wheel: " + "; ".join(outside)
from mpqc.models import MODELS_DIR, manifest
assert manifest() and all((MODELS_DIR / entry["file"]).is_file() for entry in manifest().values()), "models missing"
from mpqc.targets import builtin_targets
assert {t.name for t in builtin_targets()} >= {"ort-cpu", "bitserial", "mcu"}, "target files missing"
print(f"wheel ok: {len(names)} modules, {len(manifest())} models, version {mpqc.__version__}")
PY
mpqc="$work/venv/bin/mpqc"
"$mpqc" --version
"$mpqc" targets >/dev/null
"$mpqc" analyze >/dev/null
"$mpqc" quantize --scheme w4a8 -o q.onnx >/dev/null
"$mpqc" eval q.onnx >/dev/null
"$mpqc" profile --target bitserial >/dev/null
"$mpqc" compile --qat-policy never -o run >/dev/null 2>&1
test -s run/model.onnx && test -s run/report.html
status=0
"$mpqc" quantize missing.onnx 2>err.txt || status=$?
test "$status" -eq 2 && test "$(wc -l < err.txt)" -eq 1
echo "installed wheel: main commands ok from $(pwd)"
