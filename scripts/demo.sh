#!/usr/bin/env bash
# Starts the server with embedded defaults and trains a demo job through the CLI, so the
# stream of losses, metrics and confusion matrices can be seen live.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=target/release/gradstream
ADDR=127.0.0.1:50051
HTTP_ADDR=${GRADSTREAM_HTTP_LISTEN:-127.0.0.1:8080}
mkdir -p data

"$BIN" serve --listen "$ADDR" --http-listen "$HTTP_ADDR" --data-dir data --state-dir .state &
SERVER=$!
trap 'kill -TERM $SERVER 2>/dev/null || true; wait $SERVER 2>/dev/null || true' EXIT

# Ready when the server answers; give up after 30 s.
for _ in $(seq 1 150); do
  if "$BIN" jobs list --server "http://$ADDR" >/dev/null 2>&1; then break; fi
  if ! kill -0 "$SERVER" 2>/dev/null; then echo "the server exited; see the log above" >&2; exit 1; fi
  sleep 0.2
done

echo
echo "== dashboard: http://$HTTP_ADDR/ (open it now to watch the demo job live) =="
echo
echo "== demo job: 3 imbalanced Gaussian classes, MLP 16-64-32-3 with batch norm, Adam =="
"$BIN" train --server "http://$ADDR" --name demo \
  --samples 12000 --features 16 --classes 3 --class-ratios 0.6,0.3,0.1 --separation 1.0 \
  --hidden 64,32 --batch-norm --epochs 5 --batch-size 64 --lr 0.002 --seed 42

if [ "${DEMO_EXIT:-0}" = "1" ]; then exit 0; fi
echo
echo "The server is still running on $ADDR (gRPC) with the dashboard on http://$HTTP_ADDR/. Try:"
echo "  $BIN jobs list"
echo "  $BIN train --epochs 3 --optimizer adadelta --lr 1.0"
echo "Ctrl-C stops it."
wait "$SERVER"
