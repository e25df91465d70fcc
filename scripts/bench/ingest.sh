#!/usr/bin/env bash
# Ingest throughput: signed-off web chat webhooks acknowledged per second by the gateway
# (inbox append, durable), beside a plain axum handler that only answers 200, in one run.
# A cross-check of `cargo dev bench --scenario ingest` with an external load generator.
# Needs wrk (apt-get install wrk). Usage: scripts/bench/ingest.sh [seconds] [connections]
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-10}
conns=${2:-64}
command -v wrk >/dev/null || { echo "wrk is not installed: apt-get install wrk" >&2; exit 1; }
cargo build --release --quiet --bin concierge --bin concierge-dev
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
mkdir -p "$work/channels" "$work/prompts"
cp prompts/faq.md "$work/prompts/"
echo 'kind = "webchat"' > "$work/channels/web.toml"

run_gateway() { # $1: sync mode, $2: paused
  cat > "$work/concierge.toml" <<TOML
[server]
bind = "127.0.0.1:8092"
[store]
url = "sqlite:data/bench-$1-$2.db"
sync = "$1"
[orchestrator]
paused = $2
TOML
  RUST_LOG=warn target/release/concierge serve --config "$work/concierge.toml" &
  pid=$!
  for _ in $(seq 50); do curl -sf http://127.0.0.1:8092/healthz >/dev/null && break; sleep 0.1; done
  echo "== gateway, sync=$1, processing paused=$2"
  wrk -t2 -c"$conns" -d"${secs}s" --latency -s scripts/bench/webchat.lua http://127.0.0.1:8092 | grep -E "Requests/sec|Latency|50%|99%|Non-2xx"
  kill -TERM $pid; wait $pid || true
}

target/release/concierge-dev bench-plain --bind 127.0.0.1:8091 2>/dev/null &
base=$!
sleep 0.5
echo "== plain axum (only returns 200)"
wrk -t2 -c"$conns" -d"${secs}s" --latency -s scripts/bench/webchat.lua http://127.0.0.1:8091 | grep -E "Requests/sec|Latency|50%|99%|Non-2xx"
kill $base

run_gateway full true
run_gateway normal true
run_gateway full false
