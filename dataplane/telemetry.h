/*
 * telemetry.h: the dataplane's counters in rte_telemetry, for DPDK's own
 * tools (dpdk-telemetry.py, from Debian's dpdk-dev package):
 *   /tether/stats     ports, drops by reason, flows, ssl-session counters
 *   /tether/backends  each backend's desired state (up, down, drain, disabled)
 *                     as the control plane last set it
 * The callbacks run on DPDK's telemetry thread: they read per-worker counters
 * (plain 64-bit loads, as dataplane.sock does) and the registry, which lives
 * as long as the process; never the swappable tables.
 */
#ifndef TETHER_TELEMETRY_H
#define TETHER_TELEMETRY_H

struct dataplane_state;

/* Register the commands; 0 or a negative errno.  After EAL init. */
int telemetry_register(struct dataplane_state *state);

#endif /* TETHER_TELEMETRY_H */
