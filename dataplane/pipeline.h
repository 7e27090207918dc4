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
#include "overload.h"
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

/* What the main lcore (reload.c) or another worker (worker.c) tells a worker
 * through its ring: knowledge every worker needs, whoever learned it. */
enum worker_message_kind {
	WORKER_MESSAGE_KEY_NAME = 1,   /* a backend's ticket key name (health checks) */
	WORKER_MESSAGE_SESSION,        /* a session ID or ticket learned by a worker */
	WORKER_MESSAGE_NEIGHBOR,       /* worker 0's next-hop entry changed */
};

struct worker_message {
	uint8_t kind;
	uint8_t neighbor_state;        /* NEIGHBOR: enum neighbor_state */
	uint16_t backend;              /* KEY_NAME, SESSION: stable backend ID */
	uint32_t timeout_s;            /* SESSION: persistence timeout */
	union {
		struct session_key key;    /* KEY_NAME, SESSION */
		struct {
			uint16_t index;
			struct rte_ether_addr mac;
		} neighbor;
	};
};

struct worker {
	unsigned id;
	uint64_t now;              /* TSC, stamped once per burst */
	uint64_t hz;
	struct dataplane_port ports[2];
	struct services *services;
	struct services *pending_services;  /* set by the main lcore; taken at the loop top */
	struct rte_ring *messages;          /* main lcore -> worker (struct worker_message) */
	struct rte_mempool *mempool;   /* for ARP and ICMP frames we originate */
	struct flow_table flows;
	struct persist_table persist;
	struct synproxy *synproxy;     /* SYN cookies and delayed binding (synproxy.h) */
	struct overload overload;      /* the degradation ladder (overload.h) */
	struct neighbor_table neighbors;
	struct worker_stats stats;
	struct tx_queue tx[2];
	uint64_t next_expire, next_neighbor_tick;
	uint64_t tsc_per_ms;
	uint32_t idle_sleep_us;        /* sleep after empty polls (shared test machines) */
	uint32_t idle_polls;
	/* several workers (steer.h): the others, and the rings through which they
	 * hand this worker the frames of its clients that they received */
	struct worker *const *peers;   /* every worker, this one included */
	unsigned worker_count;
	uint16_t queue;                /* this worker's RX and TX queue on every port */
	struct rte_ring *handoff[2];   /* per logical port; NULL with one worker */
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

/* A new connection's packet at OVERLOAD_REFUSE_NEW (overload.h): dropped and
 * counted both as a drop and as the ladder's refusal. */
static inline void
pipeline_refuse_new(struct worker *worker, struct rte_mbuf *m)
{
	worker->overload.stats.refused++;
	pipeline_drop(worker, m, PACKET_DROP_OVERLOAD);
}

/* Queue `m` to next hop `index` (neighbor.h); dropped and counted while it is
 * unresolved. */
static inline void
pipeline_send_to_neighbor(struct worker *worker, struct rte_mbuf *m, uint16_t index)
{
	if (unlikely(index == NEIGHBOR_NONE ||
		     worker->neighbors.entries[index].state != NEIGHBOR_REACHABLE)) {
		pipeline_drop(worker, m, PACKET_DROP_NEIGHBOR_UNRESOLVED);
		return;
	}
	const struct neighbor *neighbor = &worker->neighbors.entries[index];
	pipeline_send(worker, neighbor->port, m, &neighbor->mac);
}

/* Backend choice by Maglev in `service`'s pool for a 32-bit hash; a runtime
 * backend index, or -1 when no backend may take flows. */
static inline int
pipeline_maglev_pick(const struct services *services, const struct runtime_service *service,
		     uint32_t hash)
{
	const struct runtime_pool *pool = &services->pools[service->pool];
	uint16_t slot = maglev_lookup(&pool->maglev, hash);

	return slot == MAGLEV_NO_BACKEND ? -1 : pool->first_backend + slot;
}

/* The 5-tuple hash Maglev uses for persistence "none": the same on every node. */
uint32_t pipeline_flow_hash(uint32_t source, uint32_t destination, uint16_t source_port,
			    uint16_t destination_port, uint8_t protocol);

/* Source-IP persistence for a new flow from `source` (see pipeline.c); sets
 * *entry to the persistence entry the flow keeps alive. */
int pipeline_schedule_source_ip(struct worker *worker, unsigned service_index, uint32_t source,
				uint32_t *entry);

/* The backend (runtime index, or -1) a new connection to a service without
 * delayed binding gets: source-ip persistence (setting *entry), or Maglev on
 * the 5-tuple.  The SYN path and the SYN-cookie path both call it, so a
 * client's backend does not depend on which one admitted it. */
int pipeline_schedule_plain(struct worker *worker, unsigned service_index, uint32_t source,
			    uint32_t destination, uint16_t source_port, uint16_t destination_port,
			    uint8_t protocol, uint32_t *entry);

/* If `key` belongs to a flow in FIN or CLOSE state, end it; true when it did. */
bool pipeline_evict_closing(struct worker *worker, const struct flow_key *key);

/* End flow `index` now: release what it holds, count it, remove it. */
void pipeline_end_flow(struct worker *worker, uint32_t index);

/* Account a new flow to its service and backend (counters, persistence). */
void pipeline_count_new_flow(struct worker *worker, const struct flow *flow);

/* ICMP: echo replies for what we own; errors about tracked flows relayed,
 * translated, to the other side (icmp.c).  Consumes `m`. */
void icmp_input(struct worker *worker, unsigned port, struct rte_mbuf *m,
		const struct packet_info *info);

#endif /* TETHER_PIPELINE_H */
