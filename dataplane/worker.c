/*
 * worker.c: the lcore loop, l3fwd-style: stamp the time, receive a burst on
 * each port, steer, run the pipeline, transmit; every millisecond expire a
 * slice of the flow table, every 10 ms run the timers and read messages.
 * Everything it writes is in its own struct worker; with several workers the
 * only shared writes are the handoff and message rings (steer.h says why).
 */
#include "worker.h"
#include "steer.h"
#include "synproxy.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <rte_cycles.h>
#include <rte_ethdev.h>
#include <rte_lcore.h>
#include <rte_ring.h>
#include <rte_ring_elem.h>

volatile bool worker_stop;

#define EXPIRE_BUDGET 1024   /* entries looked at per millisecond: 1 M per second */
#define HANDOFF_RING  4096   /* frames in flight to one worker from the others, per port */

static uint16_t
backend_next_hop(struct worker *worker, uint32_t address)
{
	const struct dataplane_port *private_port = &worker->ports[PORT_PRIVATE];

	if ((address & private_port->netmask) == (private_port->address & private_port->netmask))
		return neighbor_add(&worker->neighbors, address, PORT_PRIVATE);
	return private_port->gateway_neighbor;
}

int
worker_init(struct worker *worker, unsigned id, const struct config *config,
	    struct services *services, struct rte_mempool *mempool,
	    const struct dataplane_port ports[2], char *error, size_t error_size)
{
	const struct config_dataplane *dataplane = &config->dataplane;
	struct flow_timeouts timeouts = {
		dataplane->tcp_syn_timeout_s, dataplane->tcp_established_timeout_s,
		dataplane->tcp_fin_timeout_s, dataplane->tcp_close_timeout_s,
		dataplane->udp_timeout_s,
	};
	char name[32];
	int rc;

	memset(worker, 0, sizeof(*worker));
	worker->id = id;
	worker->hz = rte_get_tsc_hz();
	worker->tsc_per_ms = worker->hz / 1000;
	worker->idle_sleep_us = dataplane->idle_sleep_us;
	worker->mempool = mempool;
	worker->ports[PORT_PUBLIC] = ports[PORT_PUBLIC];
	worker->ports[PORT_PRIVATE] = ports[PORT_PRIVATE];

	/* the configured capacity is the total: each worker owns its share */
	unsigned workers = dataplane->workers ? dataplane->workers : 1;
	uint32_t flow_capacity = (dataplane->flow_capacity + workers - 1) / workers;
	worker->queue = (uint16_t)id;
	worker->worker_count = 1;
	snprintf(name, sizeof(name), "flows%u", id);
	if ((rc = flow_table_create(&worker->flows, name, flow_capacity, &timeouts,
				    (int)rte_socket_id())) < 0) {
		snprintf(error, error_size, "flow table of %u entries: out of memory", flow_capacity);
		return rc;
	}
	snprintf(name, sizeof(name), "persist%u", id);
	if ((rc = persist_create(&worker->persist, name, dataplane->session_capacity,
				 sizeof(struct persist_key), (int)rte_socket_id())) < 0) {
		snprintf(error, error_size, "persistence table of %u entries: out of memory",
			 dataplane->session_capacity);
		return rc;
	}
	/* Always, whatever the services: every TCP service may answer SYNs with
	 * cookies under overload, and a reload may add an ssl-session service
	 * (the tables' sizes are in the dataplane section, fixed until restart). */
	if ((rc = synproxy_create(worker, config)) < 0) {
		snprintf(error, error_size, "SYN-cookie and ssl-session state (%u bindings, %u sessions): "
			 "out of memory", dataplane->binding_capacity, dataplane->session_capacity);
		return rc;
	}
	/* a binding flow ends by its own timers (inspect, SYN retries of
	 * about 7.5 s); the flow timeout only reclaims what they missed */
	uint64_t binding_timeout = ((uint64_t)dataplane->inspect_timeout_ms + 15000) *
				   worker->tsc_per_ms;
	worker->flows.timeout[FLOW_TCP_BINDING] = binding_timeout;
	worker->flows.timeout[FLOW_TCP_CONNECTING] = binding_timeout;
	overload_init(worker, config, flow_capacity);
	if ((rc = stats_init(&worker->stats, SERVICE_IDS, BACKEND_IDS)) < 0) {
		snprintf(error, error_size, "counters: out of memory");
		return rc;
	}

	for (unsigned p = 0; p < 2; p++) {
		const struct config_port *conf = p == PORT_PUBLIC ? &dataplane->public_port :
				      dataplane->private_port.present ? &dataplane->private_port :
				      &dataplane->public_port;
		worker->ports[p].gateway_neighbor = conf->gateway ?
			neighbor_add(&worker->neighbors, rte_cpu_to_be_32(conf->gateway), (uint8_t)p) :
			NEIGHBOR_NONE;
	}
	snprintf(name, sizeof(name), "messages%u", id);
	/* several producers: the main lcore and the other workers */
	worker->messages = rte_ring_create_elem(name, sizeof(struct worker_message), 4096,
						(int)rte_socket_id(), RING_F_SC_DEQ);
	if (!worker->messages) {
		snprintf(error, error_size, "message ring: out of memory");
		return -ENOMEM;
	}
	if (services) {
		worker->services = services;
		return worker_resolve_backends(worker, services, error, error_size);
	}
	return 0;
}

int
worker_resolve_backends(struct worker *worker, struct services *services, char *error,
			size_t error_size)
{
	for (unsigned b = 0; b < services->backend_count; b++) {
		struct runtime_backend *backend = &services->backends[b];
		uint16_t next_hop = backend_next_hop(worker, backend->address);
		/* Linked workers add the same next hops in the same order, so an
		 * index means the same neighbor everywhere (worker_share_neighbor
		 * relies on it); worker 0 resolves first (reload.c). */
		if (worker->worker_count > 1 && worker->id > 0 && next_hop != backend->neighbor) {
			snprintf(error, error_size, "backend %s: worker %u's next-hop table diverged "
				 "from worker 0's", backend->name, worker->id);
			return -EINVAL;
		}
		backend->neighbor = next_hop;
		if (backend->neighbor == NEIGHBOR_NONE) {
			char address[16];
			snprintf(error, error_size, "backend %s (%s) is not on the private network and "
				 "the private port has no gateway", backend->name,
				 config_format_ipv4(rte_be_to_cpu_32(backend->address), address));
			return -EINVAL;
		}
	}
	return 0;
}

int
worker_link(struct worker *const *workers, unsigned count, char *error, size_t error_size)
{
	for (unsigned w = 0; w < count; w++) {
		struct worker *worker = workers[w];
		worker->peers = workers;
		worker->worker_count = count;
		for (unsigned p = 0; count > 1 && p < 2; p++) {
			char name[32];
			snprintf(name, sizeof(name), "handoff%u.%u", worker->id, p);
			worker->handoff[p] = rte_ring_create(name, HANDOFF_RING, (int)rte_socket_id(),
							     RING_F_SC_DEQ);
			if (!worker->handoff[p]) {
				snprintf(error, error_size, "handoff ring of worker %u: out of memory", w);
				return -ENOMEM;
			}
		}
	}
	return 0;
}

/* Learned elsewhere, applied here. */
static void
apply_neighbor(struct worker *worker, const struct worker_message *message)
{
	if (message->neighbor.index >= worker->neighbors.count)
		return;
	struct neighbor *neighbor = &worker->neighbors.entries[message->neighbor.index];
	neighbor->mac = message->neighbor.mac;
	neighbor->confirmed = worker->now;
	neighbor->next_probe = UINT64_MAX;   /* worker 0 probes and ages it */
	__atomic_store_n(&neighbor->state, message->neighbor_state, __ATOMIC_RELEASE);
}

/* Messages from the main lcore (key names harvested by health checks) and
 * from the other workers (sessions they learned, next hops). */
static void
drain_messages(struct worker *worker)
{
	struct worker_message message;

	while (rte_ring_dequeue_elem(worker->messages, &message, sizeof(message)) == 0) {
		switch (message.kind) {
		case WORKER_MESSAGE_KEY_NAME:
			if (worker->synproxy)
				persist_insert(&worker->synproxy->sessions, &message.key, message.backend,
					       worker->now + 86400 * worker->hz);
			break;
		case WORKER_MESSAGE_SESSION:
			if (worker->synproxy)
				persist_insert(&worker->synproxy->sessions, &message.key, message.backend,
					       worker->now + (uint64_t)message.timeout_s * worker->hz);
			break;
		case WORKER_MESSAGE_NEIGHBOR:
			apply_neighbor(worker, &message);
			break;
		}
	}
}

static void
tell_peers(struct worker *worker, struct worker_message *message)
{
	for (unsigned w = 0; w < worker->worker_count; w++) {
		struct worker *peer = worker->peers[w];
		if (peer == worker)
			continue;
		/* a full ring loses the news, not a packet: the peer learns the
		 * session itself when its client comes back */
		if (rte_ring_enqueue_elem(peer->messages, message, sizeof(*message)) != 0)
			worker->stats.messages_lost++;
	}
}

void
worker_share_session(struct worker *worker, const struct session_key *key, uint16_t backend,
		     uint32_t timeout_s)
{
	if (worker->worker_count == 1)
		return;
	struct worker_message message = { .kind = WORKER_MESSAGE_SESSION, .backend = backend,
					   .timeout_s = timeout_s, .key = *key };
	tell_peers(worker, &message);
}

void
worker_share_neighbor(struct worker *worker, uint16_t index)
{
	if (worker->worker_count == 1)
		return;
	const struct neighbor *neighbor = &worker->neighbors.entries[index];
	struct worker_message message = { .kind = WORKER_MESSAGE_NEIGHBOR,
					   .neighbor_state = neighbor->state };
	message.neighbor.index = index;
	message.neighbor.mac = neighbor->mac;
	tell_peers(worker, &message);
}

void
worker_receive(struct worker *worker, unsigned port, struct rte_mbuf **packets, uint16_t count)
{
	if (worker->worker_count == 1) {
		pipeline_process_burst(worker, port, packets, count);
		return;
	}
	struct rte_mbuf *mine[PIPELINE_BURST];
	struct rte_mbuf *theirs[CONFIG_WORKERS_MAX][PIPELINE_BURST];
	uint16_t mine_count = 0, their_count[CONFIG_WORKERS_MAX] = { 0 };

	for (uint16_t i = 0; i < count; i++) {
		unsigned owner = steer_owner(packets[i], port, worker->worker_count);
		if (owner == worker->id)
			mine[mine_count++] = packets[i];
		else
			theirs[owner][their_count[owner]++] = packets[i];
	}
	for (unsigned w = 0; w < worker->worker_count; w++) {
		if (their_count[w] == 0)
			continue;
		unsigned sent = rte_ring_enqueue_burst(worker->peers[w]->handoff[port],
						       (void *const *)theirs[w], their_count[w], NULL);
		worker->stats.handoff_sent += sent;
		for (unsigned i = sent; i < their_count[w]; i++)
			pipeline_drop(worker, theirs[w][i], PACKET_DROP_HANDOFF_FULL);
	}
	if (mine_count)
		pipeline_process_burst(worker, port, mine, mine_count);
}

unsigned
worker_drain_handoff(struct worker *worker)
{
	struct rte_mbuf *packets[PIPELINE_BURST];
	unsigned total = 0;

	for (unsigned p = 0; worker->worker_count > 1 && p < 2; p++) {
		unsigned count = rte_ring_dequeue_burst(worker->handoff[p], (void **)packets,
							PIPELINE_BURST, NULL);
		if (count == 0)
			continue;
		worker->stats.handoff_received += count;
		pipeline_process_burst(worker, p, packets, (uint16_t)count);
		total += count;
	}
	return total;
}

void
worker_free(struct worker *worker)
{
	flow_table_destroy(&worker->flows);
	persist_destroy(&worker->persist);
	synproxy_destroy(worker);
	stats_free(&worker->stats);
	rte_ring_free(worker->messages);
	worker->messages = NULL;
	for (unsigned p = 0; p < 2; p++) {
		rte_ring_free(worker->handoff[p]);
		worker->handoff[p] = NULL;
	}
}

void
worker_flush(struct worker *worker)
{
	for (unsigned p = 0; p < 2; p++) {
		struct tx_queue *queue = &worker->tx[p];
		struct port_stats *stats = &worker->stats.ports[p];
		if (queue->count == 0)
			continue;
		/* Count bytes first: once sent, an mbuf belongs to the driver. */
		uint64_t bytes = 0;
		for (uint16_t i = 0; i < queue->count; i++)
			bytes += queue->packets[i]->pkt_len;
		uint16_t sent = rte_eth_tx_burst(worker->ports[p].port_id, worker->queue,
						 queue->packets, queue->count);
		stats->tx_packets += sent;
		stats->tx_bytes += bytes;
		if (unlikely(sent < queue->count)) {
			for (uint16_t i = sent; i < queue->count; i++)
				stats->tx_bytes -= queue->packets[i]->pkt_len;
			stats->tx_dropped += queue->count - sent;
			rte_pktmbuf_free_bulk(&queue->packets[sent], queue->count - sent);
		}
		queue->count = 0;
	}
}

int
worker_main(void *arg)
{
	struct worker *worker = arg;
	struct rte_mbuf *packets[PIPELINE_BURST];
	/* One-arm: both logical ports are one DPDK port; poll it once. */
	unsigned port_count = worker->ports[PORT_PUBLIC].port_id ==
			      worker->ports[PORT_PRIVATE].port_id ? 1 : 2;
	uint64_t expire_interval = worker->hz / 1000, neighbor_interval = worker->hz / 100;

	/* worker 0 keeps the next hops (ARP is steered to it) and tells the others */
	bool keeps_neighbors = worker->id == 0;

	worker->now = rte_rdtsc();
	if (keeps_neighbors) {
		neighbor_announce(worker);
		neighbor_tick(worker, worker->now);
	}
	worker_flush(worker);
	while (!worker_stop) {
		worker->now = rte_rdtsc();
		/* new tables from a reload: taken between bursts, never inside one */
		struct services *next = __atomic_load_n(&worker->pending_services, __ATOMIC_ACQUIRE);
		if (unlikely(next != NULL)) {
			worker->services = next;
			__atomic_store_n(&worker->pending_services, NULL, __ATOMIC_RELEASE);
		}
		unsigned received = 0;
		for (unsigned p = 0; p < port_count; p++) {
			uint16_t count = rte_eth_rx_burst(worker->ports[p].port_id, worker->queue,
							  packets, PIPELINE_BURST);
			if (count)
				worker_receive(worker, p, packets, count);
			received += count;
		}
		received += worker_drain_handoff(worker);
		/* news from the others at once: a client resuming from another
		 * address may come back within milliseconds of the learning */
		if (unlikely(!rte_ring_empty(worker->messages)))
			drain_messages(worker);
		/* On a shared machine (the lab, CI) give the core back when idle:
		 * after 100 empty polls in a row, sleep; never while traffic flows. */
		if (unlikely(worker->idle_sleep_us)) {
			worker->idle_polls = received ? 0 : worker->idle_polls + 1;
			if (worker->idle_polls > 100)
				rte_delay_us_sleep(worker->idle_sleep_us);
		}
		if (unlikely(worker->now >= worker->next_expire)) {
			pipeline_expire(worker, EXPIRE_BUDGET);
			worker->next_expire = worker->now + expire_interval;
		}
		if (unlikely(worker->now >= worker->next_neighbor_tick)) {
			if (keeps_neighbors)
				neighbor_tick(worker, worker->now);
			synproxy_tick(worker);
			worker->next_neighbor_tick = worker->now + neighbor_interval;
		}
		worker_flush(worker);
	}
	return 0;
}
