#!/usr/bin/env bash
# Create .venv and install handover into it. Usage: scripts/setup.sh [EXTRAS], e.g. "dev,sunbird".
# Idempotent and quick: pip runs only when pyproject.toml changed since the last successful install with these
# extras (a stamp per set of extras in .venv/).
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
stamp=".venv/.handover-setup${extras:+-${extras//,/-}}"
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
if [ -z "$extras" ]; then  # the base install is part of an install with any extras
  for other in .venv/.handover-setup-*; do
    if [ -f "$other" ] && [ "$(cat "$other")" = "$want" ]; then exit 0; fi
  done
fi
pip=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)
"${pip[@]}" --upgrade pip
if [ -n "$extras" ]; then
  "${pip[@]}" -e ".[$extras]"
else
  "${pip[@]}" -e .
fi
echo "$want" >"$stamp"
