#!/usr/bin/env bash
# Three x0xd daemons on loopback: every one subscribes to a topic, A publishes 1,000 messages
# through REST, and /diagnostics/gossip must show every message delivered at every subscriber
# with zero drops. Usage: tests/daemon_mesh.sh [BIN_DIR] (default target/debug; needs the x0xd
# and x0x binaries there). LAN discovery is off: nothing leaves loopback.
set -euo pipefail
bin=${1:-target/debug}
x0xd="$bin/x0xd"; x0x="$bin/x0x"
[ -x "$x0xd" ] && [ -x "$x0x" ] || { echo "daemon_mesh: $x0xd or $x0x missing (cargo build --bin x0xd --bin x0x)"; exit 2; }
n=1000
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

# Six ports free for both UDP and TCP.
read -r -a ports <<<"$(python3 - <<'PY'
import socket
out, held = [], []
while len(out) < 6:
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("127.0.0.1", 0)); p = u.getsockname()[1]
    t = socket.socket()
    try:
        t.bind(("127.0.0.1", p)); held += [u, t]; out.append(p)
    except OSError:
        u.close(); t.close()
print(" ".join(map(str, out)))
PY
)"

start() { # name quic api bootstrap
  local dir="$work/$1"; mkdir -p "$dir/home"
  cat >"$dir/config.toml" <<EOF
data_dir = "$dir"
bind_address = "127.0.0.1:$2"
api_address = "127.0.0.1:$3"
bootstrap_peers = [$4]
lan_discovery = false
log_level = "warn"
EOF
  HOME="$dir/home" "$x0xd" --config "$dir/config.toml" >"$dir/log" 2>&1 &
  pids+=($!)
}
cli() { # name args...
  local name=$1; shift
  X0X_API_TOKEN=$(cat "$work/$name/api-token" 2>/dev/null || true) "$x0x" --api "$(cat "$work/$name/api.port" 2>/dev/null || echo 127.0.0.1:1)" --json "$@"
}
field() { python3 -c 'import json,sys
v=json.load(sys.stdin)
for k in sys.argv[1].split("."): v=v[k]
print(v)' "$1"; }
wait_for() { # seconds command...
  local end=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $end ] || return 1
    sleep 0.2
  done
}
delivered() { cli "$1" diagnostics gossip | field stats.delivered_to_subscriber; }
at_least() { [ "$(delivered "$1")" -ge "$2" ]; }
connected() { [ "$(cli "$1" network status | field connected_peers)" -ge 1 ]; }

start a "${ports[0]}" "${ports[1]}" ""
start b "${ports[2]}" "${ports[3]}" "\"127.0.0.1:${ports[0]}\""
start c "${ports[4]}" "${ports[5]}" "\"127.0.0.1:${ports[0]}\""
for d in a b c; do
  wait_for 20 cli "$d" health || { echo "daemon_mesh: $d did not answer /health"; exit 1; }
done
for d in a b c; do
  wait_for 20 connected "$d" || { echo "daemon_mesh: $d has no peer"; exit 1; }
  cli "$d" subscribe mesh >/dev/null
done

# A probe, published until B and C deliver it: the subscriptions have reached the tree.
probe_seen() { cli a publish mesh probe && at_least b 1 && at_least c 1; }
wait_for 20 probe_seen || { echo "daemon_mesh: the probe did not reach B and C"; exit 1; }
# Every probe A sent (A delivers its own too) has arrived at B and C before counting starts.
settled() { local x; x=$(delivered a); [ "$(delivered b)" -eq "$x" ] && [ "$(delivered c)" -eq "$x" ]; }
wait_for 10 settled || { echo "daemon_mesh: probes still in flight after 10 s"; exit 1; }
declare -A base
for d in a b c; do base[$d]=$(delivered "$d"); done

for i in $(seq 1 $n); do
  cli a publish mesh "message $i" >/dev/null
done
# Each subscriber's count reaches n more than before; it must be exactly n (each message once).
for d in a b c; do
  wait_for 60 at_least "$d" $((base[$d] + n)) || { echo "daemon_mesh: $d delivered $(( $(delivered "$d") - base[$d] )) of $n"; exit 1; }
done
fail=0
for d in a b c; do
  g=$(cli "$d" diagnostics gossip)
  got=$(( $(echo "$g" | field stats.delivered_to_subscriber) - base[$d] ))
  drops=$(echo "$g" | field stats.decode_to_delivery_drops)
  slow=$(echo "$g" | field stats.slow_subscriber_dropped)
  echo "daemon_mesh: $d delivered $got of $n, decode_to_delivery_drops $drops, slow_subscriber_dropped $slow"
  [ "$got" -eq "$n" ] && [ "$drops" -eq 0 ] && [ "$slow" -eq 0 ] || fail=1
done
[ $fail -eq 0 ] || { echo "daemon_mesh: FAILED"; exit 1; }
echo "daemon_mesh: $n messages through REST, every one delivered once at each of 3 subscribers, zero drops"
