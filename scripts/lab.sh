#!/usr/bin/env bash
# lab.sh: the namespace lab every demo and end-to-end test runs in.
#
# A handful of network namespaces joined by veth pairs and two bridges stand in
# for clients, a router, the balancer's two NICs, a control host and TLS
# backends, so the DPDK dataplane can run with net_af_packet on a machine
# without a spare NIC.  Only documentation ranges are used, only inside
# namespaces named tl-*; the root namespace gets nothing but the namespaces.
# Run "lab.sh --help" for the picture.
set -euo pipefail

usage() {
  echo "usage: $0 up|down|status|exec NODE CMD...|stop-backend N|start-backend N|-h"
}

help() {
  usage
  cat <<'EOF'

  up       build the lab (tears an existing one down first), make certificates,
           start a TLS/plain HTTP server in every backend, wait until they answer
  down     kill every process in every tl-* namespace, delete the namespaces and
           the state directory (succeeds when nothing is up)
  status   what is up; exit 0 when the whole lab is up, 1 otherwise
  exec NODE CMD...   run CMD in tl-NODE (router, client1, client2, lb, sw, ctl, beN,
           or a full tl-... name)
  stop-backend N / start-backend N   stop or restart the server in tl-beN

Topology (addresses from the documentation ranges only; no route leaves the lab):

  tl-client1  eth0 203.0.113.10-109/24  --- r-c1 -+
  tl-client2  eth0 203.0.113.110-209/24 --- r-c2 -+- br-cli 203.0.113.1/24
  (default route via 203.0.113.1)                   tl-router: forwarding on,
                                                    rp_filter 0, no default route
                                    r-pub 198.51.100.1/25
                                    route 192.0.2.0/24 (VIPs) via 198.51.100.2
                                      |
  tl-lb  (the balancer; ip_forward 0, no IP addresses: DPDK net_af_packet)
         tl-lb-pub   DPDK answers 198.51.100.2
         tl-lb-priv  DPDK answers 198.51.100.129
                                      |
  tl-sw  bridge br-srv (no address) - s-lb
                                    - s-ctl --- tl-ctl eth0 198.51.100.130/25
                                    - s-beN --- tl-beN eth0 198.51.100.(130+N)/25
                                      (N = 1..LAB_BACKENDS; tl-ctl and the
                                       backends route via 198.51.100.129)

  Every namespace: lo up, IPv6 off; every veth end and bridge: rx/tx checksum,
  TSO, GSO and GRO offloads off (af_packet sees what a NIC would).
  Backends run tests/e2e/lab_server.py: TLS on 443 and 8443, plain HTTP on 80,
  each with its own key and a certificate for beN.lab.example, *.assist.example
  and its IP, signed by the lab CA in the state directory.

Environment:
  LAB_BACKENDS    backends to create (default 4, 1..8)
  TETHER_LAB_DIR  state directory (default /run/tether-lab): ca.pem, ca.key,
                  beN.pem, beN.key, beN.log, beN.pid
EOF
}

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STATE_DIR=${TETHER_LAB_DIR:-/run/tether-lab}
MARKER=.tether-lab            # down removes only a directory that up created
SERVER=$REPO/tests/e2e/lab_server.py
TLS_PORTS=443,8443
PLAIN_PORTS=80
WAIT_SECONDS=10

log() { echo "lab: $*" >&2; }
die() { echo "lab: error: $*" >&2; exit 1; }
need_root() { [[ $EUID -eq 0 ]] || die "must run as root (network namespaces)"; }

# The interpreter behind "python3", resolved once: a pyenv shim costs a shell
# start for every backend and every readiness probe.
python_bin() {
  python3 -c 'import sys; print(sys.executable)' 2>/dev/null || command -v python3
}

backend_count() {
  local n=${LAB_BACKENDS:-4}
  [[ $n =~ ^[1-8]$ ]] || die "LAB_BACKENDS must be 1..8 (got '$n')"
  echo "$n"
}

# lab_namespaces: every tl-* namespace that exists now, whatever made it.
lab_namespaces() { ip netns list 2>/dev/null | awk '$1 ~ /^tl-/ {print $1}'; }

node_ns() {
  local node=$1
  [[ $node == tl-* ]] && echo "$node" || echo "tl-$node"
}

# Serialise up and down (two at once would fight over the same names).  The
# lock is on this script file so nothing is left behind; children must not
# inherit fd 9 or they would hold it for their lifetime.
take_lock() {
  exec 9<"${BASH_SOURCE[0]}"
  flock -w 60 9 || die "another lab.sh up/down holds the lock"
}

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }

# pid_alive PID: a live process, not a zombie.  An orphaned server's zombie may
# linger (PID 1 of a container need not reap it), and kill -0 says yes to it.
pid_alive() {
  local stat
  [[ $1 =~ ^[0-9]+$ ]] || return 1
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  [[ -n $stat && ${stat:0:1} != Z && ${stat:0:1} != X ]]
}

# Background steps: start with "cmd & STEP_PIDS+=($!)", then step_wait, which
# fails if any of them failed.  (A bare "wait" would also reap the certificate
# job and block on the servers.)
STEP_PIDS=()
step_wait() {
  local pid rc=0
  for pid in "${STEP_PIDS[@]}"; do wait "$pid" || rc=1; done
  STEP_PIDS=()
  return "$rc"
}

# ---------------------------------------------------------------------- down

# kill_pids SIGNAL PID...: signal the pids that still exist, never ourselves.
kill_pids() {
  local sig=$1 pid
  shift
  for pid in "$@"; do
    [[ $pid == "$$" || $pid == "$BASHPID" ]] && continue
    kill "-$sig" "$pid" 2>/dev/null || true
  done
}

# Pids from the state directory's pid files that are still lab processes; they
# matter only if someone deleted a namespace under a running server.
pidfile_pids() {
  local f pid
  [[ -d $STATE_DIR ]] || return 0
  for f in "$STATE_DIR"/*.pid; do
    [[ -f $f ]] || continue
    pid=$(<"$f")
    [[ $pid =~ ^[0-9]+$ && -r /proc/$pid/cmdline ]] || continue
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qE 'lab_server\.py|tether-' && echo "$pid"
  done
}

lab_pids() {
  local ns
  for ns in $(lab_namespaces); do ip netns pids "$ns" 2>/dev/null || true; done
  pidfile_pids
}

do_down() {
  local pids
  mapfile -t pids < <(lab_pids | sort -u)
  if ((${#pids[@]})); then
    kill_pids TERM "${pids[@]}"
    for _ in $(seq 1 40); do          # up to 2 s for a clean exit
      mapfile -t pids < <(lab_pids | sort -u)
      ((${#pids[@]})) || break
      sleep 0.05
    done
    if ((${#pids[@]})); then
      log "killing ${#pids[@]} process(es) that ignored SIGTERM"
      kill_pids KILL "${pids[@]}"
      sleep 0.1
    fi
  fi
  # Deleting a namespace destroys its veths and with them their peers.
  lab_namespaces | sed 's/^/netns del /' | ip -batch - 2>/dev/null || true
  local left
  left=$(lab_namespaces | tr '\n' ' ')
  [[ -z $left ]] || die "namespaces still present: $left"
  if [[ -d $STATE_DIR ]]; then
    if [[ -f $STATE_DIR/$MARKER ]]; then
      rm -rf -- "$STATE_DIR"
    else
      log "leaving $STATE_DIR alone: lab.sh did not create it (no $MARKER)"
    fi
  fi
}

cmd_down() {
  need_root
  take_lock
  local t0
  t0=$(now)
  do_down
  log "down in $(elapsed "$t0")s"
}

# ------------------------------------------------------------------------ up

# ns_sysctl NS KEY=VALUE...: set sysctls inside one namespace.
ns_sysctl() {
  local ns=$1
  shift
  ip netns exec "$ns" sysctl -q -w "$@" >/dev/null
}

# ns_offloads NS IF...: checksum, TSO, GSO and GRO off on each interface.
# Bridges refuse some of these; that is expected, so errors only go to the log.
ns_offloads() {
  local ns=$1
  shift
  # shellcheck disable=SC2016 # expanded by the inner sh
  ip netns exec "$ns" sh -c \
    'for i; do ethtool -K "$i" rx off tx off tso off gso off gro off || true; done' \
    ethtool "$@" >>"$STATE_DIR/ethtool.log" 2>&1
}

make_namespaces() {
  local ns
  printf 'netns add %s\n' "${NAMESPACES[@]}" | ip -batch -
  for ns in "${NAMESPACES[@]}"; do
    # IPv6 off before any link exists, so no link ever sends ND or MLD.
    ns_sysctl "$ns" net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1 & STEP_PIDS+=($!)
  done
  step_wait || die "setting sysctls in the namespaces failed"
  ns_sysctl tl-router net.ipv4.ip_forward=1 \
    net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0 \
    net.ipv4.conf.all.send_redirects=0 net.ipv4.conf.default.send_redirects=0
  ns_sysctl tl-lb net.ipv4.ip_forward=0
}

# host_batch NS GATEWAY PREFIX FIRST LAST BITS: a lab host: lo, eth0 with the
# addresses PREFIX.FIRST..PREFIX.LAST/BITS, a default route that stays in the lab.
host_batch() {
  local ns=$1 gateway=$2 prefix=$3 first=$4 last=$5 bits=$6 i
  {
    echo "link set lo up"
    echo "link set eth0 up"
    for ((i = first; i <= last; i++)); do echo "addr add $prefix.$i/$bits dev eth0"; done
    echo "route add default via $gateway"
  } | ip -n "$ns" -batch -
}

# The router creates its veths (peers land directly in the other namespaces,
# nothing passes through the root namespace) and then the switch does.
make_links() {
  local n i
  ip -n tl-router -batch - <<'EOF'
link set lo up
link add br-cli type bridge stp_state 0 forward_delay 0 mcast_snooping 0
link add r-c1 type veth peer name eth0 netns tl-client1
link add r-c2 type veth peer name eth0 netns tl-client2
link add r-pub type veth peer name tl-lb-pub netns tl-lb
link set r-c1 master br-cli
link set r-c2 master br-cli
addr add 203.0.113.1/24 dev br-cli
addr add 198.51.100.1/25 dev r-pub
link set br-cli up
link set r-c1 up
link set r-c2 up
link set r-pub up
EOF
  {
    echo "link set lo up"
    echo "link add br-srv type bridge stp_state 0 forward_delay 0 mcast_snooping 0"
    echo "link add s-lb type veth peer name tl-lb-priv netns tl-lb"
    echo "link add s-ctl type veth peer name eth0 netns tl-ctl"
    for n in $(seq 1 "$BACKENDS"); do
      echo "link add s-be$n type veth peer name eth0 netns tl-be$n"
    done
    for i in s-lb s-ctl $(seq -f 's-be%g' 1 "$BACKENDS"); do
      echo "link set $i master br-srv"
      echo "link set $i up"
    done
    echo "link set br-srv up"
  } | ip -n tl-sw -batch -
  ip -n tl-lb -batch - <<'EOF'
link set lo up
link set tl-lb-pub up
link set tl-lb-priv up
EOF
  host_batch tl-client1 203.0.113.1 203.0.113 10 109 24 & STEP_PIDS+=($!)
  host_batch tl-client2 203.0.113.1 203.0.113 110 209 24 & STEP_PIDS+=($!)
  host_batch tl-ctl 198.51.100.129 198.51.100 130 130 25 & STEP_PIDS+=($!)
  for n in $(seq 1 "$BACKENDS"); do
    host_batch "tl-be$n" 198.51.100.129 198.51.100 $((130 + n)) $((130 + n)) 25 & STEP_PIDS+=($!)
  done
  step_wait || die "configuring the lab hosts failed"
  # The VIPs live behind the balancer's public address (answered by DPDK).
  ip -n tl-router route add 192.0.2.0/24 via 198.51.100.2 dev r-pub

  ns_offloads tl-router br-cli r-c1 r-c2 r-pub & STEP_PIDS+=($!)
  ns_offloads tl-client1 eth0 & STEP_PIDS+=($!)
  ns_offloads tl-client2 eth0 & STEP_PIDS+=($!)
  ns_offloads tl-lb tl-lb-pub tl-lb-priv & STEP_PIDS+=($!)
  ns_offloads tl-sw br-srv s-lb s-ctl $(seq -f 's-be%g' 1 "$BACKENDS") & STEP_PIDS+=($!)
  ns_offloads tl-ctl eth0 & STEP_PIDS+=($!)
  for n in $(seq 1 "$BACKENDS"); do ns_offloads "tl-be$n" eth0 & STEP_PIDS+=($!); done
  step_wait || die "ethtool failed"
}

# make_certs: a lab CA and one EC P-256 key + certificate per backend, valid
# for beN.lab.example, *.assist.example (the seeded configs' FQDNs) and its IP.
make_certs() {
  local n cnf=$STATE_DIR/openssl.cnf
  cat >"$cnf" <<'EOF'
[req]
distinguished_name = dn
prompt = no
[dn]
[ca_ext]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[server_ext]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
subjectAltName = ${ENV::LAB_SAN}
EOF
  local ec=(-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 365 -config "$cnf")
  LAB_SAN=none openssl req -x509 "${ec[@]}" -extensions ca_ext \
    -subj "/O=tether lab/CN=tether lab CA" \
    -keyout "$STATE_DIR/ca.key" -out "$STATE_DIR/ca.pem" 2>/dev/null
  for n in $(seq 1 "$BACKENDS"); do
    LAB_SAN="DNS:be$n.lab.example,DNS:*.assist.example,IP:198.51.100.$((130 + n))" \
      openssl req -x509 "${ec[@]}" -extensions server_ext \
      -CA "$STATE_DIR/ca.pem" -CAkey "$STATE_DIR/ca.key" \
      -subj "/O=tether lab/CN=be$n.lab.example" \
      -keyout "$STATE_DIR/be$n.key" -out "$STATE_DIR/be$n.pem" 2>/dev/null &
  done
  wait
  for n in $(seq 1 "$BACKENDS"); do
    [[ -s $STATE_DIR/be$n.pem ]] || die "certificate for be$n was not made"
  done
  chmod 600 "$STATE_DIR"/*.key
}

# start_backend N: the lab server in tl-beN, detached (own session, no
# terminal, no inherited lock); ip netns exec and setsid both exec, so $! is
# the server's pid.
start_backend() {
  local n=$1
  ip netns exec "tl-be$n" setsid "$PYTHON" "$SERVER" --name "be$n" \
    --cert "$STATE_DIR/be$n.pem" --key "$STATE_DIR/be$n.key" \
    --tls-ports "$TLS_PORTS" --plain-ports "$PLAIN_PORTS" \
    </dev/null >>"$STATE_DIR/be$n.log" 2>&1 9<&- &
  echo $! >"$STATE_DIR/be$n.pid"
}

stop_backend() {
  local n=$1 pid
  [[ -f $STATE_DIR/be$n.pid ]] || return 0
  pid=$(<"$STATE_DIR/be$n.pid")
  if pid_alive "$pid" && kill -TERM "$pid" 2>/dev/null; then
    for _ in $(seq 1 40); do
      pid_alive "$pid" || break
      sleep 0.05
    done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$STATE_DIR/be$n.pid"
}

# wait_backends N...: from tl-ctl, until every listed backend accepts on every
# port, or fail naming what did not answer.
wait_backends() {
  local targets=() pids=() n p
  for n in "$@"; do
    pids+=("$(<"$STATE_DIR/be$n.pid")")
    for p in ${TLS_PORTS//,/ } ${PLAIN_PORTS//,/ }; do targets+=("198.51.100.$((130 + n)):$p"); done
  done
  ip netns exec tl-ctl "$PYTHON" - "$WAIT_SECONDS" "${pids[*]}" "${targets[@]}" <<'EOF'
import socket, sys, time

def alive(pid):
    try:
        with open("/proc/%s/stat" % pid) as f:
            return f.read().rpartition(")")[2].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return False

deadline = time.monotonic() + float(sys.argv[1])
pids = sys.argv[2].split()
pending = list(sys.argv[3:])
while pending and time.monotonic() < deadline:
    dead = [p for p in pids if not alive(p)]
    if dead:
        sys.exit("server process(es) %s exited" % " ".join(dead))
    still = []
    for target in pending:
        host, port = target.rsplit(":", 1)
        try:
            socket.create_connection((host, int(port)), timeout=0.5).close()
        except OSError:
            still.append(target)
    pending = still
    if pending:
        time.sleep(0.05)
if pending:
    sys.exit("not answering after %ss: %s" % (sys.argv[1], " ".join(pending)))
EOF
}

check_backends_alive() {
  local n pid
  for n in "$@"; do
    pid=$(cat "$STATE_DIR/be$n.pid" 2>/dev/null || true)
    pid_alive "$pid" && continue
    log "server be$n (pid $pid) exited; its log:"
    tail -n 20 "$STATE_DIR/be$n.log" >&2 || true
    return 1
  done
}

UP_DONE=0
up_cleanup() {
  if ((UP_DONE == 0)); then
    log "up failed: tearing the partial lab down"
    do_down || true
  fi
}

cmd_up() {
  need_root
  [[ -f $SERVER ]] || die "missing $SERVER"
  command -v openssl >/dev/null || die "openssl not installed (scripts/deps.sh)"
  command -v ethtool >/dev/null || die "ethtool not installed (scripts/deps.sh)"
  BACKENDS=$(backend_count)
  PYTHON=$(python_bin)
  [[ -n $PYTHON ]] || die "python3 not found"
  take_lock
  local t0 n
  t0=$(now)
  if [[ -d $STATE_DIR && ! -f $STATE_DIR/$MARKER && -n $(ls -A "$STATE_DIR") ]]; then
    die "$STATE_DIR exists, is not empty and was not made by lab.sh: set TETHER_LAB_DIR elsewhere"
  fi
  if [[ -n $(lab_namespaces) || -d $STATE_DIR ]]; then
    log "a lab is already up (or half up): tearing it down first"
    do_down
  fi
  trap up_cleanup EXIT

  NAMESPACES=(tl-router tl-client1 tl-client2 tl-lb tl-sw tl-ctl)
  for n in $(seq 1 "$BACKENDS"); do NAMESPACES+=("tl-be$n"); done

  mkdir -p "$STATE_DIR"
  touch "$STATE_DIR/$MARKER"
  echo "$BACKENDS" >"$STATE_DIR/backends"
  make_certs &
  local certs=$!
  make_namespaces
  make_links
  wait "$certs" || die "certificate generation failed"

  for n in $(seq 1 "$BACKENDS"); do start_backend "$n"; done
  if ! wait_backends $(seq 1 "$BACKENDS"); then
    check_backends_alive $(seq 1 "$BACKENDS") || true
    die "backends did not come up"
  fi
  check_backends_alive $(seq 1 "$BACKENDS") || die "a backend server died"
  UP_DONE=1
  log "up in $(elapsed "$t0")s: ${#NAMESPACES[@]} namespaces, $BACKENDS backends, state in $STATE_DIR"
}

cmd_backend() {
  local action=$1 n=${2:-}
  need_root
  [[ $n =~ ^[1-8]$ ]] || die "usage: $0 $action N   (backend number 1..8)"
  [[ -f $STATE_DIR/$MARKER ]] || die "the lab is not up"
  ip netns list | grep -q "^tl-be$n\b" || die "no namespace tl-be$n"
  PYTHON=$(python_bin)
  stop_backend "$n"
  if [[ $action == start-backend ]]; then
    start_backend "$n"
    wait_backends "$n" || die "be$n did not come up"
    check_backends_alive "$n" || die "be$n died"
    log "be$n started (pid $(<"$STATE_DIR/be$n.pid"))"
  else
    log "be$n stopped"
  fi
}

# -------------------------------------------------------------------- status

cmd_status() {
  need_root
  local problems=() ns n pid want=4 present
  [[ -f $STATE_DIR/backends ]] && want=$(<"$STATE_DIR/backends")
  present=" $(lab_namespaces | tr '\n' ' ') "
  if [[ -z ${present// /} && ! -d $STATE_DIR ]]; then
    echo "lab: NOT-UP (no tl-* namespaces, no $STATE_DIR)"
    return 1
  fi
  [[ -f $STATE_DIR/$MARKER ]] || problems+=("no state directory $STATE_DIR")
  local expect=(tl-router tl-client1 tl-client2 tl-lb tl-sw tl-ctl)
  for n in $(seq 1 "$want"); do expect+=("tl-be$n"); done
  echo "namespaces:"
  for ns in "${expect[@]}"; do
    if [[ $present == *" $ns "* ]]; then
      printf '  %-11s %s\n' "$ns" "$(ns_summary "$ns")"
    else
      printf '  %-11s MISSING\n' "$ns"
      problems+=("$ns missing")
    fi
  done
  for ns in $present; do
    [[ " ${expect[*]} " == *" $ns "* ]] || echo "  $ns (not part of this lab)"
  done
  echo "backend servers:"
  for n in $(seq 1 "$want"); do
    pid=$(cat "$STATE_DIR/be$n.pid" 2>/dev/null || true)
    if pid_alive "$pid"; then
      printf '  be%-2s 198.51.100.%-4s pid %s running (tls %s, plain %s)\n' \
        "$n" $((130 + n)) "$pid" "$TLS_PORTS" "$PLAIN_PORTS"
    else
      printf '  be%-2s NOT RUNNING\n' "$n"
      problems+=("be$n server not running")
    fi
  done
  if ((${#problems[@]})); then
    local IFS=,
    echo "lab: NOT-UP (${problems[*]})"
    return 1
  fi
  echo "lab: OK ($want backends, state in $STATE_DIR)"
}

# ns_summary NS: its links with addresses on one line; long address lists
# (the clients' hundred each) are shown as first-last (count).
ns_summary() {
  ip -n "$1" -o -4 addr show 2>/dev/null | awk '
    $2 != "lo" { split($4, a, "/"); n[$2]++; if (!($2 in first)) first[$2] = a[1]; last[$2] = $4 }
    END { for (d in n) printf "%s %s%s  ", d, first[d], (n[d] > 1 ? "-" last[d] " (" n[d] ")" : "/" substr(last[d], index(last[d], "/") + 1)) }'
  ip -n "$1" -o link show 2>/dev/null | awk -F': ' '
    { split($2, a, "@"); if (a[1] != "lo") printf "[%s]", a[1] }'
}

# ---------------------------------------------------------------------- exec

cmd_exec() {
  [[ $# -ge 2 ]] || die "usage: $0 exec NODE CMD..."
  need_root
  local ns
  ns=$(node_ns "$1")
  shift
  [[ -n $(lab_namespaces | grep -Fx "$ns" || true) ]] || die "no namespace $ns (is the lab up?)"
  exec ip netns exec "$ns" "$@"
}

case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  exec) shift; cmd_exec "$@" ;;
  start-backend | stop-backend) cmd_backend "$@" ;;
  -h | --help | help) help ;;
  *) usage >&2; exit 2 ;;
esac
