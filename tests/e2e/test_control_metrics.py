#!/usr/bin/env python3
"""test_control_metrics: the Prometheus page counts exactly the connections the test sent, per service and per backend.

User-visible behaviour (issue 4, acceptance 8; docs/operations.md, "Metrics"):
tether-control (tests/e2e/configs/control_metrics.json) serves
http://127.0.0.1:9469/metrics in tl-ctl; `curl` there scrapes it.  Two
services on two pools:

- `alpha` 192.0.2.20:443 -> pool alpha (be1, be2), persistence none: 40 TLS
  connections (20 sources x 2), each one GET /;
- `beta` 192.0.2.21:80 -> pool beta (be3, be4), source-ip: 24 plain HTTP
  connections (12 sources x 2), each downloading /bytes/200000.

Between a scrape before and one after (once every connection has closed):
`tether_service_new_flows_total` rose by exactly 40 and 24;
`tether_backend_new_flows_total{pool,backend}` rose by exactly the number of
connections each backend answered (the clients' reports); the packet and byte
counters of each service equal the sums of its pool's backends; `beta`'s
bytes out are at least the 24 x 200,000 body bytes the clients counted and at
most that plus 200 bytes of headers per packet; the page agrees with the
dataplane's own stats; `tether_dataplane_up` 1, `tether_backend_up` 1 for all
four.  Also: other paths get 404, POST gets 405.

Run as root: python3 tests/e2e/test_control_metrics.py --build-dir BUILD
"""

import re
import sys

from tetherlab import REPO, check, client_range, run_clients, run_scenario, wait_for

CONFIG = REPO / "tests" / "e2e" / "configs" / "control_metrics.json"
URL = "http://127.0.0.1:9469/metrics"
ALPHA = {"sources": client_range(20), "per_source": 2, "target": "192.0.2.20:443"}
BETA = {"sources": client_range(12, first=100), "per_source": 2, "target": "192.0.2.21:80"}
BODY = 200000
HEADER_ALLOWANCE = 200                       # Ethernet + IP + TCP (+ options) per packet, generous
SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def scrape(lab):
    """{(metric, frozenset of labels): value} of one scrape from tl-ctl."""
    proc = lab.exec("ctl", "curl", "-sS", "--max-time", "5", URL)
    samples = {}
    for line in proc.stdout.splitlines():
        if not line or line.startswith("#"):
            continue
        match = SAMPLE.match(line)
        check(match is not None, "not a Prometheus sample line: %r" % line)
        name, labels, value = match.groups()
        samples[(name, frozenset(LABEL.findall(labels or "")))] = float(value)
    return samples


def value(samples, name, **labels):
    key = (name, frozenset(labels.items()))
    check(key in samples, "the page has no %s{%s}" % (name, ",".join("%s=%r" % kv
                                                                     for kv in labels.items())))
    return samples[key]


def delta(before, after, name, **labels):
    return value(after, name, **labels) - value(before, name, **labels)


def scenario(lab):
    figures = {}
    lab.start_control(lab.build_dir, CONFIG)
    wait_for(lambda: lab.control_command({"command": "status"})["health"]["up"] == 4, 5,
             "the four backends to pass their checks")
    before = scrape(lab)
    alpha = run_clients(ALPHA["sources"], ALPHA["target"], per_source=ALPHA["per_source"],
                        tls=True, ca=lab.ca_path(), server_name="alpha.assist.example")
    beta = run_clients(BETA["sources"], BETA["target"], per_source=BETA["per_source"],
                       path="/bytes/%d" % BODY)
    failed = [r for r in alpha + beta if not r["ok"]]
    check(not failed, "%d client connections failed: %s" % (len(failed), failed[:2]))
    sent = {"alpha": len(alpha), "beta": len(beta)}
    answered = {}
    for service, results, pool in (("alpha", alpha, "alpha"), ("beta", beta, "beta")):
        for r in results:
            answered[(pool, r["server"])] = answered.get((pool, r["server"]), 0) + 1
    body = sum(r["bytes"] for r in beta)

    # the page counts every connection, then stops moving (the closes are in)
    def settled():
        page = scrape(lab)
        return page if all(delta(before, page, "tether_service_new_flows_total", service=k) >= n
                           for k, n in sent.items()) else None
    wait_for(settled, 5, "the page to count every connection", interval=0.2)
    previous = {}

    def still():
        page = scrape(lab)
        counters = {k: v for k, v in page.items() if k[0].endswith("_total")}
        same = counters == previous.get("counters")
        previous.update(counters=counters, page=page)
        return same
    wait_for(still, 10, "the counters to stop moving", interval=0.5)
    after = previous["page"]
    stats = lab.stats()

    for service, n in sent.items():
        got = delta(before, after, "tether_service_new_flows_total", service=service)
        figures["%s new flows" % service] = "+%d (sent %d)" % (got, n)
        check(got == n, "tether_service_new_flows_total{service=%r} rose by %d, the test sent %d"
              % (service, got, n))
    for (pool, backend) in (("alpha", "be1"), ("alpha", "be2"), ("beta", "be3"), ("beta", "be4")):
        got = delta(before, after, "tether_backend_new_flows_total", pool=pool, backend=backend)
        n = answered.get((pool, backend), 0)
        figures["%s/%s new flows" % (pool, backend)] = "+%d (clients answered by it: %d)" % (got, n)
        check(got == n, "tether_backend_new_flows_total{pool=%r,backend=%r} rose by %d; %d "
              "client connections were answered by it" % (pool, backend, got, n))
        check(value(after, "tether_backend_up", pool=pool, backend=backend) == 1,
              "tether_backend_up of %s/%s is not 1" % (pool, backend))

    pools = {"alpha": ("be1", "be2"), "beta": ("be3", "be4")}
    by_name = {(b["pool"], b["name"]): b for b in stats["backends"]}
    by_service = {s["name"]: s for s in stats["services"]}
    for service, members in pools.items():
        for metric, key in (("tether_service_packets_total", "packets"),
                            ("tether_service_bytes_total", "bytes")):
            for direction in ("in", "out"):
                total = delta(before, after, metric, service=service, direction=direction)
                parts = sum(delta(before, after, metric.replace("service", "backend"),
                                  pool=service, backend=b, direction=direction) for b in members)
                check(total == parts, "%s{service=%r,direction=%r} rose by %d, its backends' by %d"
                      % (metric, service, direction, total, parts))
                dp = by_service[service]["%s_%s" % (key, direction)]
                check(value(after, metric, service=service, direction=direction) == dp,
                      "%s{service=%r,direction=%r} is %d on the page, %d in the dataplane"
                      % (metric, service, direction, value(after, metric, service=service,
                                                           direction=direction), dp))
        for b in members:
            check(value(after, "tether_backend_new_flows_total", pool=service, backend=b) ==
                  by_name[(service, b)]["new_flows"],
                  "%s/%s new flows differ between the page and the dataplane" % (service, b))
    out_bytes = delta(before, after, "tether_service_bytes_total", service="beta", direction="out")
    out_packets = delta(before, after, "tether_service_packets_total", service="beta",
                        direction="out")
    figures["beta bytes out"] = "+%d in %d packets; the clients counted %d body bytes" % (
        out_bytes, out_packets, body)
    check(body == len(beta) * BODY, "the clients counted %d body bytes" % body)
    check(body <= out_bytes <= body + out_packets * HEADER_ALLOWANCE,
          "beta's bytes out rose by %d for %d body bytes in %d packets"
          % (out_bytes, body, out_packets))
    check(value(after, "tether_dataplane_up") == 1, "tether_dataplane_up is not 1")

    for what, args, code in (("other path", ["http://127.0.0.1:9469/other"], "404"),
                             ("POST", ["-X", "POST", URL], "405")):
        proc = lab.exec("ctl", "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                        "--max-time", "5", *args, check=False)
        figures[what] = "HTTP %s" % proc.stdout
        check(proc.stdout == code, "%s: HTTP %s, expected %s" % (what, proc.stdout, code))
    figures["page"] = "%d samples" % len(after)
    return figures


if __name__ == "__main__":
    sys.exit(run_scenario("test_control_metrics", scenario, CONFIG))
