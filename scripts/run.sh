#!/usr/bin/env bash
# Run handover on the embedded store (SQLite, no other server) with the shared examples.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HANDOVER_STORE="${HANDOVER_STORE:-sqlite:///handover.db}"
examples="${HANDOVER_EXAMPLES:-../shared/examples}"
.venv/bin/handover init
.venv/bin/handover load "$examples/fixture.json"
# local use: no authentication (serve says so loudly); set HANDOVER_AUTH_MODE=jwt and HANDOVER_AUTH_PUBLIC_KEY
export HANDOVER_AUTH_MODE="${HANDOVER_AUTH_MODE:-none}"
exec .venv/bin/handover serve --host "${HANDOVER_HOST:-127.0.0.1}" --port "${HANDOVER_PORT:-8000}"
