#!/usr/bin/env bash
# The whole test suite on a fresh machine: set-up, lint, type check, tests. Arguments go to pytest.
# Also installs what the browser tests need when it is missing: Debian's chromium (apt-get, as root) and axe-core
# (npm, into .venv/npm). If that cannot be done it says so and goes on; the browser tests then skip with the reason.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive  # CI: no prompts, stdin may be closed

CHROMIUM=/usr/bin/chromium
NPM_PREFIX=.venv/npm
AXE_JS=$NPM_PREFIX/node_modules/axe-core/axe.min.js

no_chromium() { echo "WARNING: $*; the browser tests will skip (no $CHROMIUM)." >&2; }
no_axe() { echo "WARNING: $*; the axe-core browser test will skip (no $AXE_JS)." >&2; }

# Runs "$@" with its output in a temporary log; on failure shows the log's end and returns non-zero.
quietly() {
  local log status=0
  log=$(mktemp)
  "$@" </dev/null >"$log" 2>&1 || status=$?
  if [ "$status" -ne 0 ]; then
    echo "-- '$*' exited with $status; its last lines:" >&2
    tail -n 20 "$log" >&2
  fi
  rm -f "$log"
  return "$status"
}

install_chromium() {
  [ -x "$CHROMIUM" ] && return 0
  if [ "$(id -u)" -ne 0 ]; then
    no_chromium "not root, so Debian's chromium cannot be installed (as root: apt-get install chromium)"
    return 0
  fi
  if ! command -v apt-get >/dev/null; then
    no_chromium "no apt-get to install Debian's chromium with"
    return 0
  fi
  echo "== chromium: apt-get install (once)"
  local apt=(timeout 900 apt-get -q -y -o DPkg::Lock::Timeout=300
             -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)
  if quietly "${apt[@]}" update && quietly "${apt[@]}" install chromium && [ -x "$CHROMIUM" ]; then
    echo "   $("$CHROMIUM" --version 2>/dev/null || echo "$CHROMIUM")"
  else
    no_chromium "installing Debian's chromium with apt-get failed"
  fi
}

install_axe() {
  [ -f "$AXE_JS" ] && return 0
  if ! command -v npm >/dev/null; then
    no_axe "no npm to install axe-core with"
    return 0
  fi
  echo "== axe-core: npm install into $NPM_PREFIX (once)"
  mkdir -p "$NPM_PREFIX"
  if ! quietly timeout 600 npm install --silent --no-audit --no-fund --prefix "$NPM_PREFIX" axe-core@4 \
      || [ ! -f "$AXE_JS" ]; then
    no_axe "installing axe-core with npm failed"
  fi
}

bash scripts/setup.sh dev,sunbird
install_chromium
install_axe
echo "== ruff"; .venv/bin/ruff check src tests bench
echo "== mypy"; .venv/bin/mypy
echo "== pytest"; .venv/bin/pytest "$@"
