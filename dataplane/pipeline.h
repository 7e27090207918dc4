/*
 * pipeline.h: the worker's per-lcore context and the function that processes
 * one received burst.  pipeline_process_burst() is what the worker loop, the
 * unit tests, the benchmark and the fuzzers all call: there is one copy of the
 * packet logic.
 *
 * A burst goes through in stages so that each stage works on many packets
 * while the next packets' headers are being prefetched:
 *   1. parse + classify every frame (ARP and ICMP leave here for the slow path)
 *   2. one bulk flow-table lookup for every TCP/UDP frame
 *   3. per frame: established -> NAT rewrite; new -> ACL, schedule, insert
 * Output frames are queued per logical port in worker->tx; the caller sends
 * them (worker_flush) and frees what the NIC refused.  Every mbuf ends in a
 * TX queue or is freed here.
 */
#ifndef TETHER_PIPELINE_H
#define TETHER_PIPELINE_H

#include <stdint.h>

#include <rte_common.h>
#include <rte_ether.h>
#include <rte_mbuf.h>

#include "flow.h"
#include "neighbor.h"
#include "persist.h"
#include "services.h"
#include "stats.h"

#define PIPELINE_BURST   32
#define PIPELINE_TX_MAX  (PIPELINE_BURST * 2)  /* a burst plus ARP/ICMP replies */
#define PORT_PUBLIC      0
#define PORT_PRIVATE     1

/* A logical port: what the config calls "public" or "private".  In one-arm
 * mode both are the same DPDK port. */
struct dataplane_port {
	uint16_t port_id;
	struct rte_ether_addr mac;
	uint32_t address;          /* network order */
	uint32_t netmask;          /* network order */
	uint16_t gateway_neighbor; /* NEIGHBOR_NONE when no gateway */
};

struct tx_queue {
	uint16_t count;
	struct rte_mbuf *packets[PIPELINE_TX_MAX];
};

struct worker {
	unsigned id;
	uint64_t now;              /* TSC, stamped once per burst */
	uint64_t hz;
	struct dataplane_port ports[2];
	struct services *services;
	struct rte_mempool *mempool;   /* for ARP and ICMP frames we originate */
	struct flow_table flows;
	struct persist_table persist;
	struct neighbor_table neighbors;
	struct worker_stats stats;
	struct tx_queue tx[2];
	uint64_t next_expire, next_neighbor_tick;
} __rte_cache_aligned;

/* Process `count` (<= PIPELINE_BURST) frames received on logical `port`.
 * Worker lcore only; never blocks, allocates only mbufs for replies. */
void pipeline_process_burst(struct worker *worker, unsigned port,
			    struct rte_mbuf **packets, uint16_t count);

/* Expire flows and persistence entries (bounded work); returns flows expired. */
unsigned pipeline_expire(struct worker *worker, unsigned budget);

/* Queue `m` for transmission on logical `port` to `destination` MAC; frees
 * and counts tx_full when the queue is full. */
static inline void
pipeline_send(struct worker *worker, unsigned port, struct rte_mbuf *m,
	      const struct rte_ether_addr *destination)
{
	struct rte_ether_hdr *eth = rte_pktmbuf_mtod(m, struct rte_ether_hdr *);
	struct tx_queue *queue = &worker->tx[port];

	eth->dst_addr = *destination;
	eth->src_addr = worker->ports[port].mac;
	if (unlikely(queue->count == PIPELINE_TX_MAX)) {
		worker->stats.drops[PACKET_DROP_TX_FULL]++;
		rte_pktmbuf_free(m);
		return;
	}
	queue->packets[queue->count++] = m;
}

static inline void
pipeline_drop(struct worker *worker, struct rte_mbuf *m, enum packet_reason reason)
{
	worker->stats.drops[reason]++;
	rte_pktmbuf_free(m);
}

/* ICMP: echo replies for what we own; errors about tracked flows relayed,
 * translated, to the other side (icmp.c).  Consumes `m`. */
void icmp_input(struct worker *worker, unsigned port, struct rte_mbuf *m,
		const struct packet_info *info);

#endif /* TETHER_PIPELINE_H */
