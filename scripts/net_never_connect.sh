#!/usr/bin/env bash
# Network suite, "PVs that never connect" (RELIABILITY.md, "Network"): `archiver serve`
# is asked to archive N PVs that no server answers, and for SECS seconds this prints, every
# INTERVAL seconds:
#   - search datagrams/s as counted by a UDP listener standing where the IOC would be
#     (EPICS_CA_ADDR_LIST points at it: every search the archiver sends arrives there),
#     and the most it received in any one second of the row's window,
#   - search datagrams/s and names/s from the archiver's own /metrics
#     (archiver_ca_search_datagrams_total, archiver_ca_searched_names_total),
#   - the RSS of `archiver serve` (VmRSS from /proc).
# Rates are over the real time between two rows.
#
# Usage: scripts/net_never_connect.sh [N=10000] [SECS=600] [INTERVAL=10]
# Env: ARCHIVER (default target/debug/archiver; build it first with `cargo build`).
# Not run in CI (it takes SECS); needs curl and python3.
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-10000}"
SECS="${2:-600}"
INTERVAL="${3:-10}"
BIN="${ARCHIVER:-target/debug/archiver}"
[ -x "$BIN" ] || { echo "no $BIN: run cargo build first" >&2; exit 1; }

WORK="$(mktemp -d)"
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
trap "exit 1" INT TERM

# The listener: binds a free loopback UDP port, prints it, then keeps in listener.count
# (rewritten every 0.2 s) the number of datagrams received so far and the most received
# in one whole second since the reader last deleted listener.peak.
python3 -u - "$WORK/listener.count" >"$WORK/listener.out" <<'EOF' &
import os, socket, sys, time
out = sys.argv[1]
peak_file = out.replace(".count", ".peak")
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
s.bind(("127.0.0.1", 0))
print("PORT", s.getsockname()[1], flush=True)
s.settimeout(0.05)
n, t = 0, 0.0
sec, in_sec, peak = int(time.monotonic()), 0, 0
while True:
    try:
        s.recv(65536)
        n += 1
        in_sec += 1
    except socket.timeout:
        pass
    now = time.monotonic()
    if int(now) != sec:
        sec, peak, in_sec = int(now), max(peak, in_sec), 0
    if now - t >= 0.2:
        if not os.path.exists(peak_file):
            peak = 0
            open(peak_file, "w").close()
        with open(out + ".tmp", "w") as f:
            f.write("%d %d\n" % (n, max(peak, in_sec)))
        os.replace(out + ".tmp", out)
        t = now
EOF
PIDS+=($!)
for _ in $(seq 50); do grep -q PORT "$WORK/listener.out" && break; sleep 0.1; done
SEARCH_PORT="$(awk '/PORT/{print $2}' "$WORK/listener.out")"
# A repeater port of our own, so no other client on the host takes part.
REPEATER_PORT="$(python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"

mkdir -p "$WORK/data"
printf '' >"$WORK/archiver.toml"
EPICS_CA_ADDR_LIST="127.0.0.1:$SEARCH_PORT" EPICS_CA_AUTO_ADDR_LIST=NO \
EPICS_CA_REPEATER_PORT="$REPEATER_PORT" RUST_LOG=warn \
    "$BIN" serve --config "$WORK/archiver.toml" --data-dir "$WORK/data" --listen 127.0.0.1:0 \
    >"$WORK/serve.out" 2>"$WORK/serve.err" &
SERVE=$!
PIDS+=($SERVE)
for _ in $(seq 200); do grep -q "listening on http://" "$WORK/serve.out" && break; sleep 0.1; done
URL="$(grep -o 'http://[0-9.:]*' "$WORK/serve.out" | head -1)"
[ -n "$URL" ] || { echo "archiver serve did not start:" >&2; cat "$WORK/serve.err" >&2; exit 1; }

metric() { curl -fsS "$URL/metrics" | awk -v m="$1" '$1==m{print $2}' | head -1; }
rss_kb() { awk '/VmRSS/{print $2}' "/proc/$SERVE/status"; }
now_s() { date +%s.%N; }
listened() { awk '{print $1}' "$WORK/listener.count" 2>/dev/null || echo 0; }
# The most datagrams the listener received in one second since the last call.
peak() { awk '{print $2}' "$WORK/listener.count" 2>/dev/null || echo 0; rm -f "$WORK/listener.peak"; }

echo "# $(date -u +%FT%TZ) nproc=$(nproc) mem=$(free -g | awk '/Mem/{print $2}')G N=$N SECS=$SECS binary=$BIN"
echo "# RSS before archivePV: $(rss_kb) kB"
BATCH=1000
for ((i = 0; i < N; i += BATCH)); do
    python3 -c "import json,sys; a,b=int(sys.argv[1]),int(sys.argv[2]); print(json.dumps([{'pv':'NEVER:CONNECT:%d'%k} for k in range(a,b)]))" \
        "$i" "$(( i + BATCH < N ? i + BATCH : N ))" >"$WORK/batch.json"
    curl -fsS -X POST -H 'Content-Type: application/json' --data-binary @"$WORK/batch.json" \
        "$URL/mgmt/bpl/archivePV" >/dev/null
done
echo "# $N archive requests submitted"

T0="$(now_s)"; T_PREV="$T0"
D0="$(metric archiver_ca_search_datagrams_total)"; M0="$(metric archiver_ca_searched_names_total)"
L0="$(listened)"
printf '%6s %14s %12s %14s %12s %10s\n' t_s listener_dg/s peak_dg/1s metrics_dg/s names/s rss_MB
peak >/dev/null
while awk -v a="$(now_s)" -v b="$T0" -v s="$SECS" 'BEGIN{exit !(a - b < s)}'; do
    sleep "$INTERVAL"
    T1="$(now_s)"; L1="$(listened)"; P="$(peak)"
    D1="$(metric archiver_ca_search_datagrams_total)"; M1="$(metric archiver_ca_searched_names_total)"
    awk -v t="$T1" -v t0="$T0" -v tp="$T_PREV" -v l0="$L0" -v l1="$L1" -v d0="$D0" -v d1="$D1" \
        -v m0="$M0" -v m1="$M1" -v r="$(rss_kb)" -v p="$P" \
        'BEGIN{e=t-tp; printf "%6d %14.1f %12d %14.1f %12.1f %10.1f\n", t-t0, (l1-l0)/e, p, (d1-d0)/e, (m1-m0)/e, r/1024}'
    T_PREV="$T1"; L0="$L1"; D0="$D1"; M0="$M1"
done
echo "# datagrams in all: listener $(listened), metrics $(metric archiver_ca_search_datagrams_total)"
