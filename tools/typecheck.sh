#!/usr/bin/env bash
# Type-check mpqc as it is installed: passes/, targets/ and models/ are the subpackages
# mpqc.passes, mpqc.targets and mpqc.models, so mypy reads them through a tree of links
# that has that layout (build/typecheck/mpqc).
set -euo pipefail
cd "$(dirname "$0")/.."
root=build/typecheck
rm -rf "$root"
mkdir -p "$root/mpqc"
for entry in mpqc/*; do
  ln -s "$PWD/$entry" "$root/mpqc/$(basename "$entry")"
done
ln -s "$PWD/passes" "$root/mpqc/passes"
ln -s "$PWD/targets" "$root/mpqc/targets"
ln -s "$PWD/models" "$root/mpqc/models"
cd "$root"
exec "${PYTHON:-python3}" -m mypy --config-file ../../pyproject.toml -p mpqc
