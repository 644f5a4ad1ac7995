#!/usr/bin/env bash
# Run handover on the embedded store (SQLite, no other server) with the shared examples.
# The example fixture is loaded only into a new store (a store in use keeps its records: `init --example`);
# `serve` refuses a port already taken before it starts anything (set HANDOVER_PORT) and prints the console's URL.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HANDOVER_STORE="${HANDOVER_STORE:-sqlite:///handover.db}"
examples="${HANDOVER_EXAMPLES:-../shared/examples}"
.venv/bin/handover init --example "$examples/fixture.json"
# local use: no authentication (serve says so loudly); set HANDOVER_AUTH_MODE=jwt and HANDOVER_AUTH_PUBLIC_KEY
export HANDOVER_AUTH_MODE="${HANDOVER_AUTH_MODE:-none}"
exec .venv/bin/handover serve --host "${HANDOVER_HOST:-127.0.0.1}" --port "${HANDOVER_PORT:-8000}"
