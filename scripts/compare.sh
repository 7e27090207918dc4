#!/usr/bin/env bash
# compare.sh: tether side by side with HAProxy, nginx and nftables in the
# namespace lab (what `scripts/bench.sh --compare` runs).  The same four lab
# backends and the same client namespace behind each balancer in turn, in
# rounds that alternate the peers; one table of connections/s, resumptions,
# bulk throughput and the balancer's CPU per 100,000 connections, with ratios
# to tether.  docs/benchmarking.md ("The lab comparison") says how to read it.
set -euo pipefail

usage() {
  cat <<'USAGE'
usage: scripts/compare.sh [--build-dir DIR] [--out DIR] [--rounds N] [--seconds S]
                          [--threads N] [--peers LIST] [--quick]
       scripts/bench.sh --compare [the same options]

Brings the namespace lab up (scripts/lab.sh), then, for each round, puts each
balancer in tl-lb in front of the lab's four TLS backends (lab_server.py) and
measures it from tl-client1 with tests/load/tls_load.c (tether-load):

  new      full TLS 1.2 handshakes + GET / + close, --threads at a time (conn/s)
  resume   200 sessions made, then resumptions of them by session ID, each from
           another client address than its creator (conn/s, and the fraction
           that really resumed: how sticky the balancer was)
  bulk     2 TLS downloads at a time of 20 MB each (MB/s)

and, over the same windows, the balancer's CPU: utime+stime of its processes
(/proc/PID/stat), and the machine's softirq time (/proc/stat), which is the
whole cost of nftables.  The peers:

  tether    tether-dataplane (DPDK net_af_packet, 1 worker, idle_sleep_us 50),
            ssl-session persistence with source-ip fallback
            (tests/load/compare-tether.json)
  haproxy   HAProxy, mode tcp, nbthread 1, balance source (consistent hash),
            stick table on the SSL session ID: stick on payload_lv(43,1) on
            the ClientHello, stick store-response on the ServerHello (with a
            tcp-response inspect-delay, without which nothing is learned)
  nginx     nginx stream, 1 worker, hash $remote_addr consistent
  nftables  DNAT with conntrack, jhash of the source address over the 4 backends

The kernel peers get the addresses tether answers for (198.51.100.2/25 on
tl-lb-pub, 198.51.100.129/25 on tl-lb-priv) and the VIP 192.0.2.10 on lo (or
ip_forward and an nftables table); all of it is removed again before the next
peer, and the lab is taken down at the end, also on failure or Ctrl-C.

  --build-dir DIR  build tree (default: build); tether-dataplane and tether-load
                   are built there if needed
  --out DIR        where compare-results.json and compare-results.md go
                   (default: .)
  --rounds N       rounds; each visits every peer once, starting one peer later
                   than the round before (default 2)
  --seconds S      timed seconds of each new and resume window (default 6;
                   bulk gets half)
  --threads N      concurrent client connections (default 16)
  --peers LIST     comma-separated subset, in this order (default
                   tether,haproxy,nginx,nftables)
  --quick          1 round of 2 s windows (a smoke run: figures are noisy)

Needs root, haproxy, nginx with its stream module and nft (scripts/deps.sh).
It refuses to run while a lab is up: the lab is shared, so run it under the
lab's lock, e.g.  flock /run/tether-lab.lock scripts/bench.sh --compare
Takes about 3 minutes with the defaults on a 2-core machine.
USAGE
}

die() { echo "compare.sh: $*" >&2; exit 1; }

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build_dir="$root/build"
out_dir=$(pwd)
rounds=2
seconds=6
threads=16
peers=tether,haproxy,nginx,nftables
while (($#)); do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --build-dir) build_dir=$(realpath -m "${2:?--build-dir takes a directory}"); shift 2 ;;
    --out) out_dir=$(realpath -m "${2:?--out takes a directory}"); shift 2 ;;
    --rounds) rounds="${2:-}"; shift 2 ;;
    --seconds) seconds="${2:-}"; shift 2 ;;
    --threads) threads="${2:-}"; shift 2 ;;
    --peers) peers="${2:-}"; shift 2 ;;
    --quick) rounds=1; seconds=2; shift ;;
    *) echo "compare.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
[[ "$rounds" =~ ^[1-9]$ ]] || { echo "compare.sh: --rounds takes 1..9" >&2; exit 2; }
[[ "$seconds" =~ ^[1-9][0-9]?$ ]] || { echo "compare.sh: --seconds takes 1..99" >&2; exit 2; }
[[ "$threads" =~ ^[1-9][0-9]{0,2}$ ]] && ((threads <= 256)) ||
  { echo "compare.sh: --threads takes 1..256" >&2; exit 2; }
IFS=, read -r -a PEERS <<<"$peers"
((${#PEERS[@]})) || { echo "compare.sh: --peers is empty" >&2; exit 2; }
for p in "${PEERS[@]}"; do
  [[ " tether haproxy nginx nftables " == *" $p "* ]] ||
    { echo "compare.sh: unknown peer '$p' (tether, haproxy, nginx, nftables)" >&2; exit 2; }
done

[[ $EUID -eq 0 ]] || die "must run as root (network namespaces)"
need() { command -v "$1" >/dev/null || die "$1 not found: run scripts/deps.sh"; }
need ip; need python3; need nft; need haproxy; need nginx
STREAM_MODULE=/usr/lib/nginx/modules/ngx_stream_module.so
[[ -f $STREAM_MODULE ]] || die "nginx's stream module ($STREAM_MODULE) is missing: run scripts/deps.sh"

LAB="$root/scripts/lab.sh"
VIP=192.0.2.10
PORT=443
BACKENDS=(198.51.100.131 198.51.100.132 198.51.100.133 198.51.100.134)
SOURCES=203.0.113.10-203.0.113.109            # tl-client1's addresses
BULK_BYTES=20000000
SESSIONS=200
TETHER_CONFIG="$root/tests/load/compare-tether.json"

# The caller's lock (flock /run/tether-lab.lock ...) reaches this script as an
# open file; the lab's servers would inherit it and keep the lock held if they
# ever outlived this script.  flock itself holds it until this script ends.
for fd in /proc/$$/fd/*; do
  n=${fd##*/}
  [[ $n =~ ^[0-9]+$ ]] && ((n > 2 && n != 255)) || continue
  [[ $(readlink "$fd" 2>/dev/null) == *.lock ]] && eval "exec $n<&-"
done

# A lab that is up belongs to someone else (or to a run that died): never tear
# it down from here.
if ip netns list 2>/dev/null | grep -q '^tl-'; then
  die "a lab is up (tl-* namespaces exist): another run is using it, or it is stale
  (then: scripts/lab.sh down). Run this under the lab's lock:
  flock /run/tether-lab.lock scripts/bench.sh --compare"
fi

# Build (idempotent).
if [[ ! -f "$build_dir/CMakeCache.txt" ]]; then
  cmake -S "$root" -B "$build_dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
fi
cmake --build "$build_dir" --target tether-dataplane tether-load -j "$(nproc)" >/dev/null ||
  die "building failed (cmake --build $build_dir --target tether-dataplane tether-load)"
DATAPLANE="$build_dir/tether-dataplane"
LOAD="$build_dir/tests/load/tether-load"
[[ -x $DATAPLANE && -x $LOAD ]] || die "$DATAPLANE or $LOAD missing after the build"
"$DATAPLANE" --check --config "$TETHER_CONFIG" >/dev/null || die "$TETHER_CONFIG does not validate"

mkdir -p "$out_dir"
work=$(mktemp -d /tmp/tether-compare.XXXXXX)
PEER_PIDS=()          # what the current peer started (killed by peer_down)
KERNEL_SETUP=0        # addresses/VIP/forwarding in tl-lb to remove
LAB_STARTED=0

# ---------------------------------------------------------------- teardown

kill_pids() {
  local pid
  for pid in "$@"; do kill -TERM "$pid" 2>/dev/null || true; done
  for _ in $(seq 50); do
    local alive=0
    for pid in "$@"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    ((alive)) || return 0
    sleep 0.1
  done
  for pid in "$@"; do kill -KILL "$pid" 2>/dev/null || true; done
}

kernel_down() {
  ((KERNEL_SETUP)) || return 0
  ip netns exec tl-lb nft delete table ip tether_compare 2>/dev/null || true
  ip netns exec tl-lb sysctl -q -w net.ipv4.ip_forward=0 >/dev/null 2>&1 || true
  ip -n tl-lb route del 203.0.113.0/24 via 198.51.100.1 2>/dev/null || true
  ip -n tl-lb addr del "$VIP/32" dev lo 2>/dev/null || true
  ip -n tl-lb addr flush dev tl-lb-pub 2>/dev/null || true
  ip -n tl-lb addr flush dev tl-lb-priv 2>/dev/null || true
  KERNEL_SETUP=0
}

peer_down() {
  if ((${#PEER_PIDS[@]})); then kill_pids "${PEER_PIDS[@]}"; fi
  PEER_PIDS=()
  kernel_down
}

cleanup() {
  local status=$?
  trap - EXIT INT TERM
  peer_down || true
  if ((LAB_STARTED)); then "$LAB" down >/dev/null 2>&1 || echo "compare.sh: lab.sh down failed" >&2; fi
  rm -rf "$work"
  exit "$status"
}
trap cleanup EXIT
trap 'echo "compare.sh: interrupted" >&2; exit 130' INT TERM

# ------------------------------------------------------------------- peers

# kernel_up FORWARD: tl-lb gets the addresses tether answers for; with
# FORWARD=0 the VIP goes on lo (a proxy listens on it), with 1 it forwards.
kernel_up() {
  KERNEL_SETUP=1
  ip -n tl-lb addr add 198.51.100.2/25 dev tl-lb-pub
  ip -n tl-lb addr add 198.51.100.129/25 dev tl-lb-priv
  ip -n tl-lb route add 203.0.113.0/24 via 198.51.100.1 dev tl-lb-pub
  if (($1)); then
    ip netns exec tl-lb sysctl -q -w net.ipv4.ip_forward=1 >/dev/null
  else
    ip -n tl-lb addr add "$VIP/32" dev lo
  fi
}

# wait_port: until a TCP connect from tl-client1 to the VIP succeeds (10 s).
wait_port() {
  local i
  for i in $(seq 100); do
    ip netns exec tl-client1 python3 -c "
import socket, sys
s = socket.socket(); s.settimeout(0.5)
sys.exit(s.connect_ex(('$VIP', $PORT)))" 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}

dataplane_stats() {
  python3 - "$work/dp.sock" <<'EOF'
import json, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(1.0)
s.connect(sys.argv[1])
s.sendall(b'{"command": "stats"}\n')
data = b""
while True:
    chunk = s.recv(65536)
    if not chunk:
        break
    data += chunk
    try:
        json.loads(data)
        break
    except ValueError:
        pass
print(data.decode())
EOF
}

tether_up() {
  ip netns exec tl-lb "$DATAPLANE" --config "$TETHER_CONFIG" --socket "$work/dp.sock" \
    >>"$work/dataplane.log" 2>&1 </dev/null &
  PEER_PIDS=($!)
  local i
  for i in $(seq 200); do
    kill -0 "${PEER_PIDS[0]}" 2>/dev/null || { tail -20 "$work/dataplane.log" >&2; die "tether-dataplane exited"; }
    # ready: every backend and the gateway resolved by ARP
    if dataplane_stats 2>/dev/null | python3 -c '
import json, sys
s = json.load(sys.stdin)
ok = all(b["neighbor_resolved"] for b in s["backends"]) and s["arp"]["learned"] >= 5
sys.exit(0 if ok else 1)' 2>/dev/null; then
      wait_port && return 0
      break
    fi
    sleep 0.1
  done
  tail -20 "$work/dataplane.log" >&2
  dataplane_stats 2>/dev/null | python3 -c '
import json, sys
s = json.load(sys.stdin)
print("backends resolved:", [(b["address"], b["neighbor_resolved"]) for b in s["backends"]],
      "arp:", s["arp"])' >&2 || true
  die "tether-dataplane did not resolve its backends by ARP, or did not accept on $VIP:$PORT"
}

haproxy_up() {
  local i cfg="$work/haproxy.cfg"
  {
    cat <<EOF
global
    nbthread 1
    maxconn 5000
defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend tls
    bind $VIP:$PORT
    default_backend pool
backend pool
    # new sessions by the client's address; resumptions by the SSL session ID
    balance source
    hash-type consistent
    stick-table type binary len 32 size 200k expire 30m
    acl clienthello req_ssl_hello_type 1
    acl serverhello rep_ssl_hello_type 2
    tcp-request inspect-delay 5s
    tcp-request content accept if clienthello
    # Without a response inspect-delay HAProxy 2.6 runs the response rules
    # before the ServerHello is in, stores nothing, and the stick table only
    # ever holds what the first resumption's "stick on" stored: 15-22 % of
    # resumptions resumed in this lab, against 100 % with it.
    tcp-response inspect-delay 5s
    tcp-response content accept if serverhello
    stick on payload_lv(43,1) if clienthello
    stick store-response payload_lv(43,1) if serverhello
EOF
    for i in "${!BACKENDS[@]}"; do echo "    server be$((i + 1)) ${BACKENDS[$i]}:$PORT"; done
  } >"$cfg"
  kernel_up 0
  ip netns exec tl-lb haproxy -db -f "$cfg" >>"$work/haproxy.log" 2>&1 </dev/null &
  PEER_PIDS=($!)
  wait_port || { tail -20 "$work/haproxy.log" >&2; die "haproxy did not listen on $VIP:$PORT"; }
}

nginx_up() {
  local b
  mkdir -p "$work/nginx/logs"
  {
    cat <<EOF
load_module $STREAM_MODULE;
worker_processes 1;
daemon off;
master_process on;
pid $work/nginx/nginx.pid;
error_log $work/nginx/logs/error.log warn;
events { worker_connections 20000; }
stream {
    upstream pool {
        hash \$remote_addr consistent;
EOF
    for b in "${BACKENDS[@]}"; do echo "        server $b:$PORT;"; done
    cat <<EOF
    }
    server {
        listen $VIP:$PORT backlog=4096;
        proxy_pass pool;
        proxy_connect_timeout 5s;
        proxy_timeout 30s;
    }
}
EOF
  } >"$work/nginx/nginx.conf"
  kernel_up 0
  ip netns exec tl-lb nginx -p "$work/nginx" -e "$work/nginx/logs/error.log" \
    -c "$work/nginx/nginx.conf" >>"$work/nginx.log" 2>&1 </dev/null &
  PEER_PIDS=($!)
  wait_port || { tail -20 "$work/nginx/logs/error.log" >&2; die "nginx did not listen on $VIP:$PORT"; }
  local worker="" i
  for i in $(seq 50); do
    worker=$(pgrep -P "${PEER_PIDS[0]}" | head -1 || true)
    [[ -n $worker ]] && break
    sleep 0.1
  done
  [[ -n $worker ]] || die "nginx started no worker"
  PEER_PIDS+=("$worker")
}

nftables_up() {
  local i map=""
  for i in "${!BACKENDS[@]}"; do map+="${map:+, }$i : ${BACKENDS[$i]}"; done
  kernel_up 1
  ip netns exec tl-lb nft -f - <<EOF
table ip tether_compare {
    chain prerouting {
        type nat hook prerouting priority dstnat; policy accept;
        ip daddr $VIP tcp dport $PORT dnat to jhash ip saddr mod ${#BACKENDS[@]} map { $map }
    }
}
EOF
  PEER_PIDS=()
  wait_port || die "nftables DNAT to $VIP:$PORT does not connect"
}

# idle_cpu: the peer's CPU share of one core over 2 idle seconds (a polling
# dataplane spends CPU with no traffic; the others should not).
proc_ticks() {
  local pid total=0
  for pid in "$@"; do
    total=$((total + $(awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$pid/stat")))
  done
  echo "$total"
}

# measure PEER ROUND: the three windows, each a tether-load JSON document.
measure() {
  local peer=$1 round=$2 mode pidargs=() pid t0 t1 hz
  for pid in "${PEER_PIDS[@]}"; do pidargs+=(--cpu-pid "$pid"); done
  hz=$(getconf CLK_TCK)
  if ((${#PEER_PIDS[@]})); then
    # 1 s to settle first (tether's start-up still touches its tables), then 2 s
    sleep 1
    t0=$(proc_ticks "${PEER_PIDS[@]}"); sleep 2; t1=$(proc_ticks "${PEER_PIDS[@]}")
    echo "{\"idle_cpu_share\": $(awk -v a="$t0" -v b="$t1" -v hz="$hz" 'BEGIN { printf "%.3f", (b - a) / hz / 2 }')}" \
      >"$work/r$round-$peer-idle.json"
  fi
  for mode in new resume bulk; do
    local args=(--target "$VIP:$PORT" --mode "$mode" --sources "$SOURCES" --tls 1.2
                --tickets off --server-name compare.assist.example "${pidargs[@]}")
    case $mode in
      new) args+=(--threads "$threads" --seconds "$seconds") ;;
      resume) args+=(--threads "$threads" --seconds "$seconds" --sessions "$SESSIONS") ;;
      bulk) args+=(--threads 2 --seconds "$(awk -v s="$seconds" 'BEGIN { print s / 2 }')"
                   --bulk-bytes "$BULK_BYTES") ;;
    esac
    # exit 1 (some connections failed) still prints the document
    timeout 120 ip netns exec tl-client1 "$LOAD" "${args[@]}" >"$work/r$round-$peer-$mode.json" \
      2>>"$work/load.log" || true
    if ! python3 -c 'import json,sys; json.load(open(sys.argv[1]))' "$work/r$round-$peer-$mode.json" 2>/dev/null; then
      tail -5 "$work/load.log" >&2
      die "tether-load printed no result for $peer $mode (round $round)"
    fi
    python3 - "$work/r$round-$peer-$mode.json" "$peer" "$mode" "$round" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
extra = ""
if d["mode"] == "resume":
    extra = ", resumed %.0f%%" % (100 * d["reused_fraction"])
if d["mode"] == "bulk":
    extra = ", %.1f MB/s" % (d["bytes_per_second"] / 1e6)
if d["failed"]:
    extra += " (first error: %s)" % d["first_error"]
print("  round %s %-9s %-6s %6d ok %4d failed in %4.1f s: %7.1f conn/s; CPU %5.2f s, softirq %5.2f s%s"
      % (sys.argv[4], sys.argv[2], sys.argv[3], d["ok"], d["failed"], d["seconds"],
         d["per_second"], d["cpu"]["process_s"], d["cpu"]["softirq_s"], extra), flush=True)
EOF
  done
}

# ------------------------------------------------------------------- run

start=$(date +%s)
cpu=$(lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -1)
read -r load1 _ < /proc/loadavg
echo "CPU: ${cpu:-unknown}, $(nproc) CPUs; kernel $(uname -r); load average before: $load1"
echo "peers: ${PEERS[*]}; $rounds round(s), ${seconds} s windows, $threads client threads"
echo "versions: $(haproxy -v | head -1 | cut -d' ' -f1-3); $(nginx -v 2>&1); $(nft --version)"
echo
"$LAB" up >"$work/lab.log" 2>&1 || { tail -20 "$work/lab.log" >&2; die "lab.sh up failed"; }
LAB_STARTED=1
echo "lab up in $(($(date +%s) - start)) s"

count=${#PEERS[@]}
for ((r = 1; r <= rounds; r++)); do
  for ((i = 0; i < count; i++)); do
    peer=${PEERS[$(((i + r - 1) % count))]}
    "${peer}_up"
    measure "$peer" "$r"
    peer_down
  done
done
run_s=$(($(date +%s) - start))

python3 "$root/tests/load/compare_report.py" --work "$work" --peers "$peers" --rounds "$rounds" \
  --seconds "$seconds" --threads "$threads" --json "$out_dir/compare-results.json" \
  --markdown "$out_dir/compare-results.md" --machine "${cpu:-unknown}, $(nproc) CPUs" \
  --run-seconds "$run_s"
echo
echo "compare.sh: $(($(date +%s) - start)) s; wrote $out_dir/compare-results.json and $out_dir/compare-results.md"
