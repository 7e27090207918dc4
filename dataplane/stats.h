/*
 * stats.h: per-worker counters.  Each worker writes only its own struct
 * (cache-aligned, no atomics, no sharing); the main lcore sums them when an
 * operator asks (api.c).  On x86-64 a 64-bit aligned load is never torn, so
 * the reader sees each counter at some recent value.
 */
#ifndef TETHER_STATS_H
#define TETHER_STATS_H

#include <stdint.h>

#include <rte_common.h>

#include "packet.h"

#define STATS_PORTS 2   /* logical ports: public, private */

struct port_stats {
	uint64_t rx_packets, rx_bytes;
	uint64_t tx_packets, tx_bytes;
	uint64_t tx_dropped;
};

struct service_stats {
	uint64_t new_flows;
	uint64_t packets_in, bytes_in;    /* client -> backend */
	uint64_t packets_out, bytes_out;  /* backend -> client */
	uint64_t persist_hits, persist_misses;
};

struct backend_stats {
	uint64_t new_flows, expired_flows;
	uint64_t packets_in, bytes_in;
	uint64_t packets_out, bytes_out;
};

struct worker_stats {
	struct port_stats ports[STATS_PORTS];
	uint64_t drops[PACKET_REASON_COUNT];
	uint64_t flows_created, flows_expired;
	uint64_t rst_out_of_window;        /* RSTs not believed (flow state kept) */
	uint64_t persist_inserted, persist_expired;
	uint64_t arp_requests_sent, arp_replies_sent, arp_learned, arp_gratuitous_sent;
	uint64_t icmp_echo_replies, icmp_errors_relayed;
	uint64_t handoff_sent, handoff_received;   /* frames steered to their owner (steer.h) */
	uint64_t messages_lost;                    /* news for another worker, its ring full */
	struct service_stats *services;   /* service_count entries */
	struct backend_stats *backends;   /* backend_count entries */
} __rte_cache_aligned;

int stats_init(struct worker_stats *stats, unsigned service_count, unsigned backend_count);
void stats_free(struct worker_stats *stats);

#endif /* TETHER_STATS_H */
