#!/usr/bin/env bash
# Run handover on the embedded store (SQLite, no other server) with the shared examples.
# The example fixture is loaded only into a new store (a store in use keeps its records); a port already taken
# stops it before the store is touched (set HANDOVER_PORT). It prints the console's URL as the server starts.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HANDOVER_STORE="${HANDOVER_STORE:-sqlite:///handover.db}"
examples="${HANDOVER_EXAMPLES:-../shared/examples}"
host="${HANDOVER_HOST:-127.0.0.1}"
port="${HANDOVER_PORT:-8000}"
if ! .venv/bin/python - "$host" "$port" <<'PY'
import socket, sys
host, port = sys.argv[1], int(sys.argv[2])
family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
with socket.socket(family, kind, proto) as probe:
    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        probe.bind(address)
    except OSError as exc:
        sys.exit(f"error: port {port} on {host} is taken ({exc.strerror}): is handover already running? "
                 "Stop it, or choose another port: HANDOVER_PORT=8001 bash scripts/run.sh")
PY
then
  exit 2
fi
.venv/bin/handover init --example "$examples/fixture.json"
# local use: no authentication (serve says so loudly); set HANDOVER_AUTH_MODE=jwt and HANDOVER_AUTH_PUBLIC_KEY
export HANDOVER_AUTH_MODE="${HANDOVER_AUTH_MODE:-none}"
echo "handover: console at http://$host:$port/admin (API docs at http://$host:$port/docs); Ctrl-C stops it" >&2
exec .venv/bin/handover serve --host "$host" --port "$port"
