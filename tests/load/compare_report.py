#!/usr/bin/env python3
"""compare_report.py: the table and the closing note of scripts/compare.sh.

Reads the tether-load documents compare.sh left in its work directory
(r<round>-<peer>-<mode>.json, r<round>-<peer>-idle.json), sums each peer's
windows over the rounds (rates are total ok connections over total seconds, CPU
is total seconds over total connections), and prints two markdown tables with
ratios to tether, then a note that states those ratios and says where a peer
wins and why.  Writes the same to --markdown and every figure (and every
round's raw document) to --json.

What "balancer CPU" means: utime + stime of the balancer's processes over the
window (tether-dataplane, haproxy, nginx's master and worker); nftables has no
process, so its figure is the machine's softirq time over the window, which
also holds the veth and TCP work of the clients, the router and the backends:
an upper bound of what the NAT cost.  The softirq column shows that machine
figure for every peer, so the two can be set side by side.
"""

import argparse
import json
import sys
from pathlib import Path

MODES = ("new", "resume", "bulk")
KERNEL_ONLY = {"nftables"}


def load(work, rounds, peers):
    """{peer: {mode: [document per round]}, peer + ':idle': [shares]}."""
    data = {}
    for peer in peers:
        data[peer] = {mode: [] for mode in MODES}
        data[peer]["idle"] = []
        for r in range(1, rounds + 1):
            for mode in MODES:
                path = work / ("r%d-%s-%s.json" % (r, peer, mode))
                if path.exists():
                    data[peer][mode].append(json.loads(path.read_text()))
            idle = work / ("r%d-%s-idle.json" % (r, peer))
            if idle.exists():
                data[peer]["idle"].append(json.loads(idle.read_text())["idle_cpu_share"])
    return data


def summarize(peer, docs, idle):
    """One peer's figures, summed over its rounds."""
    out = {"peer": peer}
    for mode in MODES:
        runs = docs[mode]
        ok = sum(d["ok"] for d in runs)
        seconds = sum(d["seconds"] for d in runs)
        process = sum(d["cpu"]["process_s"] for d in runs)
        softirq = sum(d["cpu"]["softirq_s"] for d in runs)
        busy = sum(d["cpu"]["busy_s"] for d in runs)
        balancer = softirq if peer in KERNEL_ONLY else process
        m = {
            "ok": ok,
            "failed": sum(d["failed"] for d in runs),
            "seconds": seconds,
            "per_second": ok / seconds if seconds else 0.0,
            "per_second_rounds": [d["per_second"] for d in runs],
            "reused": sum(d["reused"] for d in runs),
            "server_reused": sum(d["server_reused"] for d in runs),
            "bytes": sum(d["bytes"] for d in runs),
            "bytes_per_second": sum(d["bytes"] for d in runs) / seconds if seconds else 0.0,
            "process_s": process,
            "softirq_s": softirq,
            "busy_s": busy,
            "balancer_cpu_s": balancer,
            "balancer_cpu_per_100k": balancer / ok * 1e5 if ok else None,
            "softirq_per_100k": softirq / ok * 1e5 if ok else None,
            "busy_per_100k": busy / ok * 1e5 if ok else None,
            "balancer_cpu_per_gb": balancer / (sum(d["bytes"] for d in runs) / 1e9)
            if mode == "bulk" and sum(d["bytes"] for d in runs) else None,
            "backends": {},
            "first_errors": [d["first_error"] for d in runs if d["first_error"]],
        }
        for d in runs:
            for name, c in d["backends"].items():
                m["backends"][name] = m["backends"].get(name, 0) + c
        m["reused_fraction"] = m["reused"] / ok if ok else 0.0
        m["latency_p50_ms"] = median([d["latency_ms"]["p50"] for d in runs])
        m["latency_p99_ms"] = max([d["latency_ms"]["p99"] for d in runs], default=None)
        out[mode] = m
    out["idle_cpu_share"] = sum(idle) / len(idle) if idle else None
    out["rounds"] = {mode: docs[mode] for mode in MODES}
    return out


def median(values):
    values = sorted(values)
    if not values:
        return None
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


def ratio(a, b):
    if a is None or b in (None, 0):
        return None
    return a / b


def fmt_ratio(r):
    return "-" if r is None else "%.2fx" % r


def fmt(v, spec):
    return "-" if v is None else spec % v


def spread(values):
    if len(values) < 2:
        return ""
    return " (%s)" % "/".join("%.0f" % v for v in values)


def tables(summary, peers):
    t = summary.get("tether")
    lines = []
    lines.append("| peer | new conn/s (per round) | x tether | resumed conn/s (per round) "
                 "| x tether | resumptions resumed | new p50 / p99 ms | bulk MB/s | x tether "
                 "| failed |")
    lines.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for p in peers:
        s = summary[p]
        failed = sum(s[m]["failed"] for m in MODES)
        lines.append("| %s | %.0f%s | %s | %.0f%s | %s | %.1f %% | %s / %s | %.1f | %s | %d |" % (
            p, s["new"]["per_second"], spread(s["new"]["per_second_rounds"]),
            fmt_ratio(ratio(s["new"]["per_second"], t and t["new"]["per_second"])),
            s["resume"]["per_second"], spread(s["resume"]["per_second_rounds"]),
            fmt_ratio(ratio(s["resume"]["per_second"], t and t["resume"]["per_second"])),
            100 * s["resume"]["reused_fraction"],
            fmt(s["new"]["latency_p50_ms"], "%.0f"), fmt(s["new"]["latency_p99_ms"], "%.0f"),
            s["bulk"]["bytes_per_second"] / 1e6,
            fmt_ratio(ratio(s["bulk"]["bytes_per_second"], t and t["bulk"]["bytes_per_second"])),
            failed))
    lines.append("")
    lines.append("| peer | balancer CPU s /100K new | x tether | /100K resumed | x tether "
                 "| CPU s /GB bulk | idle CPU (% of a core) | softirq s /100K new (machine) |")
    lines.append("|---|---:|---:|---:|---:|---:|---:|---:|")
    for p in peers:
        s = summary[p]
        mark = " (softirq)" if p in KERNEL_ONLY else ""
        lines.append("| %s | %s%s | %s | %s | %s | %s | %s | %s |" % (
            p, fmt(s["new"]["balancer_cpu_per_100k"], "%.1f"), mark,
            fmt_ratio(ratio(s["new"]["balancer_cpu_per_100k"],
                            t and t["new"]["balancer_cpu_per_100k"])),
            fmt(s["resume"]["balancer_cpu_per_100k"], "%.1f"),
            fmt_ratio(ratio(s["resume"]["balancer_cpu_per_100k"],
                            t and t["resume"]["balancer_cpu_per_100k"])),
            fmt(s["bulk"]["balancer_cpu_per_gb"], "%.2f"),
            "-" if s["idle_cpu_share"] is None else "%.0f %%" % (100 * s["idle_cpu_share"]),
            fmt(s["new"]["softirq_per_100k"], "%.1f")))
    return lines


def note(summary, peers):
    """The closing note: every ratio to tether in words, where a peer wins, why."""
    t = summary.get("tether")
    if t is None:
        return ["Closing note: tether was not among the peers, so there are no ratios."]
    lines = ["Closing note (ratios are peer / tether; for CPU, below 1 means the peer "
             "spent less):"]
    for p in peers:
        if p == "tether":
            continue
        s = summary[p]
        r_new = ratio(s["new"]["per_second"], t["new"]["per_second"])
        r_res = ratio(s["resume"]["per_second"], t["resume"]["per_second"])
        r_bulk = ratio(s["bulk"]["bytes_per_second"], t["bulk"]["bytes_per_second"])
        r_cpu = ratio(s["new"]["balancer_cpu_per_100k"], t["new"]["balancer_cpu_per_100k"])
        r_cpu_res = ratio(s["resume"]["balancer_cpu_per_100k"],
                          t["resume"]["balancer_cpu_per_100k"])
        wins, loses = [], []
        for name, r, better_high in (("new connections/s", r_new, True),
                                     ("resumed connections/s", r_res, True),
                                     ("bulk throughput", r_bulk, True),
                                     ("CPU per 100K new connections", r_cpu, False),
                                     ("CPU per 100K resumptions", r_cpu_res, False)):
            if r is None:
                continue
            if (r > 1.1) if better_high else (r < 0.9):
                wins.append(name)
            elif (r < 0.9) if better_high else (r > 1.1):
                loses.append(name)
        lines.append("- %s: new conn/s %s, resumed conn/s %s, bulk %s, CPU per 100K new %s, "
                     "per 100K resumed %s; resumptions that resumed %.0f %% (tether %.0f %%). "
                     "Better than tether on: %s. Worse on: %s." % (
                         p, fmt_ratio(r_new), fmt_ratio(r_res), fmt_ratio(r_bulk),
                         fmt_ratio(r_cpu), fmt_ratio(r_cpu_res),
                         100 * s["resume"]["reused_fraction"],
                         100 * t["resume"]["reused_fraction"],
                         ", ".join(wins) or "nothing (within 10 %)",
                         ", ".join(loses) or "nothing (within 10 %)"))
    lines.append("")
    lines.append("Why, as far as this lab can say:")
    idle = t.get("idle_cpu_share")
    lines.append("- tether-dataplane polls its net_af_packet rings and sleeps idle_sleep_us "
                 "(50) only after an empty poll: with no traffic at all it used %s of a "
                 "core. Its CPU per connection (%s s per 100K new) includes that polling, "
                 "which this lab cannot separate from the work: on two shared cores a "
                 "loaded worker can get less CPU than an idle one. Every packet also "
                 "crosses the kernel twice more than with a kernel balancer: copied into "
                 "the AF_PACKET ring, into an mbuf, and out with sendto(). On a NIC with a "
                 "poll-mode driver there is no such copy, but the polling core stays." % (
                     "-" if idle is None else "%.0f %%" % (100 * idle),
                     fmt(t["new"]["balancer_cpu_per_100k"], "%.1f")))
    sticky = [p for p in peers if summary[p]["resume"]["reused_fraction"] >= 0.95]
    loose = [p for p in peers if summary[p]["resume"]["reused_fraction"] < 0.95]
    if loose:
        lines.append("- Resumptions come from another client address than the one that made "
                     "the session. %s place by the client's address, so a resumption reaches "
                     "the server that holds its session only when the new address hashes to "
                     "the same backend (about 1 in 4 here); the others do a full handshake "
                     "on another server, which is why their resumed conn/s is close to their "
                     "new conn/s." % ", ".join(loose))
    if sticky:
        lines.append("- %s resume by the TLS session ID (tether: learned from the ServerHello; "
                     "HAProxy: its stick table, payload_lv(43,1)), whatever the client's "
                     "address." % ", ".join(sticky))
    lines.append("- The proxies (HAProxy, nginx) terminate TCP twice, in the kernel, with no "
                 "copy through AF_PACKET; nftables is NAT in softirq with no process at all "
                 "(its figure is the machine's softirq, which includes every veth hop of the "
                 "clients, router and backends: an upper bound).")
    lines.append("- Rates are bounded by this 2-core machine: the Python backends, the client "
                 "and the balancer share it, so connections/s is what the balancer left to "
                 "the rest as much as its own speed. CPU per 100K connections is the fairer "
                 "figure; the bare-metal section says how to measure tether for real.")
    return lines


def main(argv):
    ap = argparse.ArgumentParser(description="compare.sh's table and closing note")
    ap.add_argument("--work", required=True, type=Path)
    ap.add_argument("--peers", required=True)
    ap.add_argument("--rounds", required=True, type=int)
    ap.add_argument("--seconds", type=float)
    ap.add_argument("--threads", type=int)
    ap.add_argument("--machine", default="")
    ap.add_argument("--run-seconds", type=float)
    ap.add_argument("--json", required=True, type=Path)
    ap.add_argument("--markdown", required=True, type=Path)
    args = ap.parse_args(argv)
    peers = args.peers.split(",")
    data = load(args.work, args.rounds, peers)
    missing = [p for p in peers if not all(data[p][m] for m in MODES)]
    if missing:
        print("compare_report: no results for %s" % ", ".join(missing), file=sys.stderr)
        return 1
    summary = {p: summarize(p, data[p], data[p]["idle"]) for p in peers}
    text = tables(summary, peers) + [""] + note(summary, peers)
    print()
    print("\n".join(text))
    args.markdown.write_text("\n".join(text) + "\n")
    args.json.write_text(json.dumps({
        "machine": args.machine, "rounds": args.rounds, "seconds": args.seconds,
        "threads": args.threads, "run_seconds": args.run_seconds, "peers": summary},
        indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
