#!/usr/bin/env bash
# Run handover on the embedded store (SQLite, no other server) with the shared examples.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HANDOVER_STORE="${HANDOVER_STORE:-sqlite:///handover.db}"
examples="${HANDOVER_EXAMPLES:-../shared/examples}"
.venv/bin/handover init
.venv/bin/handover load "$examples/fixture.json"
.venv/bin/handover replay "$examples/events.jsonl" --report replay-report.jsonl
.venv/bin/handover dump
