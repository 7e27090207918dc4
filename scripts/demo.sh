#!/usr/bin/env bash
# demo.sh: tether end to end, in about ten seconds once built.
#
# Installs what is missing (scripts/deps.sh), builds the dataplane if needed,
# brings up the namespace lab (scripts/lab.sh), starts tether-dataplane on
# config/lab.json in tl-lb, drives real TLS clients (curl, and the project's
# test client for a batch and for TLS session resumptions) through every VIP from many client addresses, and
# prints what happened: which backend served each client, the per-backend
# counts, the 443 -> 8443 port translation, a source refused by allow_from, and
# the dataplane's drop counters.  A trap tears everything down on exit or
# Ctrl-C: no tl-* namespace, no veth and no tether process is left behind.
set -euo pipefail

usage() {
  echo "usage: sudo $0   (Debian 12, as root; BUILD_DIR=DIR to use another build tree)"
}
case "${1:-}" in
  -h | --help) usage; exit 0 ;;
  "") ;;
  *) usage >&2; exit 2 ;;
esac
if [[ $EUID -ne 0 ]]; then
  echo "demo: must run as root (packages, network namespaces)" >&2
  usage >&2
  exit 1
fi

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD_DIR=${BUILD_DIR:-$REPO/build}
CONFIG=$REPO/config/lab.json
LAB=$REPO/scripts/lab.sh
STATE_DIR=${TETHER_LAB_DIR:-/run/tether-lab}
SOCKET=$STATE_DIR/dataplane.sock
LAB_NAMES='^(tl-|r-c[12]$|r-pub$|s-lb$|s-ctl$|s-be[0-9]+$|br-cli$|br-srv$)'

if [[ -t 1 && -z ${NO_COLOR:-} && ${CI:-} != true ]]; then
  BOLD=$'\e[1m' DIM=$'\e[2m' GREEN=$'\e[32m' RED=$'\e[31m' RESET=$'\e[0m'
else
  BOLD='' DIM='' GREEN='' RED='' RESET=''
fi

T0=$(date +%s.%N)
elapsed() { awk -v a="$T0" -v b="$(date +%s.%N)" 'BEGIN { printf "%5.1fs", b - a }'; }
step() { echo "${DIM}[$(elapsed)]${RESET} ${BOLD}$*${RESET}"; }
die() { echo "${RED}demo: error: $*${RESET}" >&2; exit 1; }

WORK=$(mktemp -d /tmp/tether-demo.XXXXXX)
DP_PID=
LAB_UP=0

# ------------------------------------------------------------------ teardown

stop_dataplane() {
  [[ -n $DP_PID ]] || return 0
  if kill -0 "$DP_PID" 2>/dev/null; then
    kill -TERM "$DP_PID" 2>/dev/null || true
    for _ in $(seq 1 50); do
      kill -0 "$DP_PID" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$DP_PID" 2>/dev/null || true
  fi
  wait "$DP_PID" 2>/dev/null || true
  DP_PID=
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  set +e
  if ((rc == 130 || rc == 143)); then
    echo "demo: interrupted" >&2
  elif ((rc != 0)) && [[ -f $STATE_DIR/dataplane.log ]]; then
    echo "--- tether-dataplane log (tail) ---" >&2
    tail -n 20 "$STATE_DIR/dataplane.log" >&2
  fi
  stop_dataplane
  if ((LAB_UP)); then
    step "tearing down"
    "$LAB" down >/dev/null 2>"$WORK/down.log" || cat "$WORK/down.log" >&2
  fi
  rm -rf -- "$WORK"
  local left
  left=$(ip netns list 2>/dev/null | awk '$1 ~ /^tl-/ {print $1}' | tr '\n' ' ')
  left+=$(ip -o link show 2>/dev/null | awk -F': ' '{split($2, a, "@"); print a[1]}' |
          grep -E "$LAB_NAMES" | tr '\n' ' ' || true)
  left+=$(pgrep -f -- "tether-dataplane --config $CONFIG" | sed 's/^/pid /' | tr '\n' ' ' || true)
  if [[ -n ${left// /} ]]; then
    echo "${RED}demo: left behind: $left${RESET}" >&2
    rc=1
  elif ((LAB_UP)); then
    echo "${DIM}[$(elapsed)]${RESET} clean: no tl-* namespace, no lab veth, no tether process left"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --------------------------------------------------------------- preparation

step "checking packages (scripts/deps.sh)"
"$REPO/scripts/deps.sh" | sed 's/^/  /'

step "building tether-dataplane and the test client in $BUILD_DIR"
if [[ ! -f $BUILD_DIR/CMakeCache.txt ]]; then
  cmake -S "$REPO" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=RelWithDebInfo >"$WORK/cmake.log" 2>&1 ||
    { tail -n 30 "$WORK/cmake.log" >&2; die "cmake failed"; }
fi
make -C "$BUILD_DIR" -j2 tether-dataplane tether-test-client >"$WORK/make.log" 2>&1 ||
  { tail -n 30 "$WORK/make.log" >&2; die "the build failed"; }

step "bringing up the lab (scripts/lab.sh up)"
LAB_UP=1
"$LAB" up 2>&1 | sed 's/^/  /'
CA=$STATE_DIR/ca.pem

step "starting tether-dataplane in tl-lb on config/lab.json"
# Its own session: Ctrl-C reaches this script, whose trap stops it in order.
# ip netns exec and setsid both exec, so $! is the dataplane's pid.
ip netns exec tl-lb setsid "$BUILD_DIR/tether-dataplane" --config "$CONFIG" --socket "$SOCKET" \
  </dev/null >"$STATE_DIR/dataplane.log" 2>&1 &
DP_PID=$!

# dp PYTHON-EXPRESSION: evaluates it with s = the dataplane's stats (json.loads).
dp() {
  python3 - "$SOCKET" "$1" <<'EOF'
import json, socket, sys
def ask(command):
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(5)
        sock.connect(sys.argv[1])
        sock.sendall(json.dumps({"command": command}).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(1 << 20)
            if not chunk:
                break
            data += chunk
    return json.loads(data)
s = ask("stats")
result = eval("(%s)" % sys.argv[2])
if result is not None and result is not True:
    print(result)
sys.exit(0 if result is not False else 1)
EOF
}

# Ready: the socket answers, and ARP has resolved every backend and the gateway.
ready=0
deadline=$((SECONDS + 20))
while ((SECONDS < deadline)); do
  kill -0 "$DP_PID" 2>/dev/null || die "tether-dataplane exited during start-up"
  if dp 'all(b["neighbor_resolved"] for b in s["backends"]) and
         s["arp"]["learned"] >= len({b["address"] for b in s["backends"]}) + 1' 2>/dev/null; then
    ready=1
    break
  fi
  sleep 0.1
done
((ready)) || die "tether-dataplane did not become ready in 20 s"
summary=$(dp '"%d services, %d backends" % (len(s["services"]), len(s["backends"]))')
echo "  pid $DP_PID, socket $SOCKET; $summary, ARP resolved"

# ------------------------------------------------------------------- clients

# One curl per row: namespace, client address, VIP, port, scheme, TLS name.
CURLS=(
  "client1 203.0.113.10  192.0.2.10 443 https portal.assist.example"
  "client1 203.0.113.11  192.0.2.10 443 https portal.assist.example"
  "client1 203.0.113.12  192.0.2.10 80  http  portal.assist.example"
  "client1 203.0.113.20  192.0.2.20 443 https cp.assist.example"
  "client1 203.0.113.21  192.0.2.20 443 https cp.assist.example"
  "client1 203.0.113.22  192.0.2.20 443 https cp.assist.example"
  "client1 203.0.113.20  192.0.2.20 443 https cp.assist.example"
  "client2 203.0.113.150 192.0.2.20 443 https cp.assist.example"
  "client2 203.0.113.151 192.0.2.20 443 https cp.assist.example"
  "client2 203.0.113.150 192.0.2.20 443 https cp.assist.example"
  "client2 203.0.113.152 192.0.2.20 80  http  cp.assist.example"
  "client1 203.0.113.30  192.0.2.21 443 https be1.lab.example"
  "client2 203.0.113.170 192.0.2.22 443 https be2.lab.example"
  "client2 203.0.113.180 192.0.2.23 443 https be3.lab.example"
)
REFUSED_FROM=203.0.113.190   # outside portal-https's allow_from 203.0.113.0/26

step "curl through every VIP (TLS verified against the lab CA)"
printf '  %s%-15s  %-18s  %-15s  %-26s  %-8s%s\n' "$BOLD" "client" "VIP:port" "backend" \
  "backend saw peer" "TLS" "$RESET"
for row in "${CURLS[@]}"; do
  read -r node source vip port scheme name <<<"$row"
  body=$(ip netns exec "tl-$node" curl -sS --max-time 5 --cacert "$CA" --interface "$source" \
           --resolve "$name:$port:$vip" "$scheme://$name:$port/" 2>"$WORK/curl.err") ||
    die "curl from $source to $vip:$port failed: $(cat "$WORK/curl.err")"
  # body: server=be2 port=443 peer=203.0.113.20:41234 tls=TLSv1.3 reused=0
  declare -A f=()
  for kv in $body; do f[${kv%%=*}]=${kv#*=}; done
  printf '  %-15s  %-18s  %-15s  %-26s  %-8s\n' "$source" "$vip:$port" \
    "${f[server]}:${f[port]}" "${f[peer]}" "${f[tls]}"
  unset f
done

step "allow_from: $REFUSED_FROM -> 192.0.2.10:443 (portal-https allows 203.0.113.0/26 only)"
acl_before=$(dp 's["drops"]["acl_denied"]')
if ip netns exec tl-client2 curl -sS --max-time 2 --cacert "$CA" --interface "$REFUSED_FROM" \
     --resolve portal.assist.example:443:192.0.2.10 https://portal.assist.example/ \
     >/dev/null 2>"$WORK/curl.err"; then
  die "$REFUSED_FROM reached portal-https despite allow_from"
fi
acl_after=$(dp 's["drops"]["acl_denied"]')
why=$(sed 's/^curl: ([0-9]*) //' "$WORK/curl.err")
echo "  ${GREEN}refused${RESET}: no answer at all (curl: $why);" \
  "drops.acl_denied +$((acl_after - acl_before))"

step "lab_client batch: 200 client addresses x 3 TLS connections to 192.0.2.20:443 (cp-shared)"
python3 - "$REPO/tests/e2e" "$CA" <<'EOF'
import collections, sys, time
sys.path.insert(0, sys.argv[1])
from tetherlab import client_range, run_clients
started = time.monotonic()
results = run_clients(client_range(200), "192.0.2.20:443", tls=True, ca=sys.argv[2],
                      server_name="cp.assist.example", per_source=3, timeout=10)
seconds = time.monotonic() - started
ok = [r for r in results if r["ok"]]
by_source = collections.defaultdict(set)
for r in ok:
    by_source[r["source"]].add(r["server"])
per_backend = collections.Counter(r["server"] for r in ok)
ips = collections.Counter(next(iter(s)) for s in by_source.values() if len(s) == 1)
nat = sum(1 for r in ok if r["peer"].rsplit(":", 1)[0] == r["source"])
print("  %d/%d connections ok in %.1f s; %d of %d client addresses always on the same backend"
      % (len(ok), len(results), seconds, sum(1 for s in by_source.values() if len(s) == 1),
         len(by_source)))
for name in sorted(per_backend):
    print("    %-4s %4d connections  %3d client addresses" % (name, per_backend[name], ips[name]))
print("  the backend saw the client's own address in %d/%d (NAT mode)" % (nat, len(ok)))
sys.exit(0 if len(ok) == len(results) else 1)
EOF

step "SSL-session persistence: TLS sessions resumed from other addresses (portal-https, be1+be2)"
# A mobile device resumes its TLS session from a new address (Wi-Fi to
# cellular): the resumption must reach the server that holds the session.
for mode in "1.2 off session IDs" "1.2 on tickets" "1.3 on TLS 1.3 tickets"; do
  read -r version tickets label <<<"$mode"
  ip netns exec tl-client1 "$BUILD_DIR/tests/tether-test-client" --target 192.0.2.10:443 \
      --server-name portal.assist.example --ca "$CA" --tls "$version" --tickets "$tickets" \
      --sessions 20 --resumes 3 --create-from 203.0.113.10-203.0.113.29 \
      --resume-from 203.0.113.30-203.0.113.60 >"$WORK/resume.json" ||
    die "tether-test-client failed ($label): $(head -c 300 "$WORK/resume.json")"
  python3 - "$WORK/resume.json" "TLS $version, $label" <<'EOF2'
import json, sys
s = json.load(open(sys.argv[1]))["summary"]
print("  %-26s %d/%d connections ok; %d/%d resumptions from another address reached the"
      " session's server, %d resumed it" % (sys.argv[2], s["ok"], s["connections"],
      s["same_backend_as_creator"], s["resumptions"], s["reused"]))
EOF2
done
dp '"  ssl_session: hits session_id %d, ticket %d, key_name %d; learned session_id %d, ticket %d,"
    " key_name %d; TLS 1.3 session IDs ignored %d" % tuple(s["ssl_session"][k] for k in (
    "hit_session_id", "hit_ticket", "hit_key_name", "learned_session_id", "learned_ticket",
    "learned_key_name", "tls13_session_id_ignored"))'

step "ping the VIPs"
for vip in 192.0.2.10 192.0.2.20 192.0.2.23; do
  ip netns exec tl-client1 ping -n -c 2 -i 0.2 -W 1 -I 203.0.113.10 "$vip" |
    awk -v v="$vip" '/received/ { print "  " v ": " $0 }'
done

# -------------------------------------------------------------------- report

step "what the dataplane counted (dataplane.sock)"
dp '"\n".join(
  ["  services:"] +
  ["    %-15s %s:%-4d %-12s new_flows %4d  persist hits/misses %d/%d" % (v["name"], v["vip"],
     v["port"], v["persistence"], v["new_flows"], v["persist_hits"], v["persist_misses"])
   for v in s["services"] if v["new_flows"]] +
  ["  backends (pool/name address[:port], no port = the service port):"] +
  ["    %-10s %-15s new_flows %4d  packets in/out %d/%d" % (b["pool"] + "/" + b["name"],
     b["address"] + (":%d" % b["port"] if b["port"] else ""), b["new_flows"], b["packets_in"],
     b["packets_out"])
   for b in s["backends"] if b["new_flows"]] +
  ["  port translation: " + "; ".join("%s %s:%d -> %s %s:%d" % (v["name"], v["vip"], v["port"],
     b["name"], b["address"], b["port"]) for v in s["services"] for b in s["backends"]
     if b["pool"] == v["pool"] and b["port"] not in (0, v["port"]))] +
  ["  icmp: echo replies %d, errors relayed %d" % (s["icmp"]["echo_replies"],
                                                   s["icmp"]["errors_relayed"])] +
  ["  drops (non-zero): " + (", ".join("%s %d" % kv for kv in s["drops"].items() if kv[1])
                             or "none")] +
  (["    (ip_options: the lab bridge br-srv announces itself with IGMP reports, which carry"
    " the Router Alert option)"] if s["drops"]["ip_options"] else []))'
step "done"
