/*
 * neighbor.h: ARP.  The dataplane answers ARP for what it owns (its port
 * addresses; VIPs on the public port), resolves its next hops (the gateways and
 * the backends), re-probes them before their entries age out, and announces
 * every VIP with gratuitous ARP at start.
 *
 * The table holds only next hops named by the config (added at build), never
 * addresses learned from strangers, so an ARP flood cannot fill it.  An entry
 * is REACHABLE for NEIGHBOR_REACHABLE_S after the last reply; past
 * NEIGHBOR_PROBE_S it is re-probed every second while still in use; past the
 * reachable time it is INCOMPLETE and traffic to it is dropped and counted
 * until it answers.  Owned by the worker lcore.
 */
#ifndef TETHER_NEIGHBOR_H
#define TETHER_NEIGHBOR_H

#include <stdint.h>

#include <rte_ether.h>

#define NEIGHBOR_MAX         2048
#define NEIGHBOR_NONE        0xffff
#define NEIGHBOR_PROBE_S     30
#define NEIGHBOR_REACHABLE_S 60

enum neighbor_state { NEIGHBOR_INCOMPLETE = 0, NEIGHBOR_REACHABLE = 1 };

struct neighbor {
	uint32_t address;          /* network order */
	uint8_t port;              /* logical port it is reached through */
	uint8_t state;
	struct rte_ether_addr mac;
	uint64_t confirmed;        /* TSC of the last reply */
	uint64_t next_probe;       /* TSC */
};

struct neighbor_table {
	unsigned count;
	struct neighbor entries[NEIGHBOR_MAX];
};

/* Add (or find) next hop `address` on logical `port`; returns its index or
 * NEIGHBOR_NONE when the table is full.  Control path. */
uint16_t neighbor_add(struct neighbor_table *table, uint32_t address, uint8_t port);

/* Index of `address`, or NEIGHBOR_NONE. */
uint16_t neighbor_find(const struct neighbor_table *table, uint32_t address);

struct worker;
struct rte_mbuf;

/* Handle an ARP frame received on logical `port`: learn, answer.  Consumes `m`. */
void arp_input(struct worker *worker, unsigned port, struct rte_mbuf *m);

/* Send due probes and age entries.  Call every few milliseconds. */
void neighbor_tick(struct worker *worker, uint64_t now);

/* Announce every VIP (and each port address) with gratuitous ARP. */
void neighbor_announce(struct worker *worker);

#endif /* TETHER_NEIGHBOR_H */
