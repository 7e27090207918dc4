/*
 * pipeline.c: one received burst, parse -> classify -> bulk flow lookup ->
 * NAT, or new-flow scheduling.  The stages and their contract are described
 * in pipeline.h; the NAT rewrites in nat.h; ARP and ICMP leave for the slow
 * path in neighbor.c and icmp.c.
 */
#include "pipeline.h"

#include <rte_hash_crc.h>
#include <rte_prefetch.h>
#include <rte_tcp.h>

#include "nat.h"
#include "synproxy.h"

#define PREFETCH_OFFSET 4
#define MAGLEV_SEED     0x7e74e7u   /* same on every node: the same client picks the same backend */

static void
flow_expired(struct flow *flow, void *arg)
{
	struct worker *worker = arg;

	if (flow->persist_entry != FLOW_NO_PERSIST)
		worker->persist.entries[flow->persist_entry].flows--;
	if (flow->binding != FLOW_NO_BINDING)
		synproxy_flow_gone(worker, flow);
	/* a flow that never got a backend was never counted to one */
	if (flow->backend_address)
		worker->stats.backends[flow->backend].expired_flows++;
}

void
pipeline_end_flow(struct worker *worker, uint32_t index)
{
	flow_expired(&worker->flows.flows[index], worker);
	flow_remove(&worker->flows, index);
	worker->stats.flows_expired++;
}

static void new_flow(struct worker *worker, unsigned port, struct rte_mbuf *m,
		     const struct packet_info *info);

bool
pipeline_evict_closing(struct worker *worker, const struct flow_key *key)
{
	uint32_t reference = flow_lookup(&worker->flows, key);

	if (reference == UINT32_MAX)
		return false;
	uint8_t state = flow_at(&worker->flows, reference)->state;
	if (state != FLOW_TCP_FIN && state != FLOW_TCP_CLOSE)
		return false;
	pipeline_end_flow(worker, reference >> 1);
	return true;
}

/* Forward one packet of a known flow, rewritten for the side it goes to.
 * Inlined into the burst loop: a call's register saves were a tenth of an
 * established packet's instructions. */
static __rte_always_inline void
forward_flow(struct worker *worker, unsigned port, struct rte_mbuf *m,
	     const struct packet_info *info, uint32_t reference)
{
	struct flow *flow = flow_at(&worker->flows, reference);
	enum flow_direction direction = reference & 1;
	uint8_t *frame = rte_pktmbuf_mtod(m, uint8_t *);
	struct service_stats *service = &worker->stats.services[flow->service];
	struct backend_stats *backend = &worker->stats.backends[flow->backend];

	/* Clients come in on the public port, backends on the private one: a
	 * flow's packet on the other side is spoofed (one-arm has one side). */
	if (unlikely(port != (direction == FLOW_FORWARD ? PORT_PUBLIC : PORT_PRIVATE) &&
		     worker->ports[PORT_PUBLIC].port_id != worker->ports[PORT_PRIVATE].port_id)) {
		pipeline_drop(worker, m, PACKET_DROP_WRONG_SIDE);
		return;
	}
	if (unlikely(flow->state >= FLOW_TCP_BINDING)) {
		synproxy_binding_packet(worker, m, info, reference);
		return;
	}
	if (unlikely(direction == FLOW_FORWARD && info->protocol == IPPROTO_TCP &&
		     (info->tcp_flags & (RTE_TCP_SYN_FLAG | RTE_TCP_ACK_FLAG)) == RTE_TCP_SYN_FLAG)) {
		if (flow->state == FLOW_TCP_FIN || flow->state == FLOW_TCP_CLOSE) {
			/* the client reuses the port of a closing connection: a new
			 * connection, a new flow, scheduled afresh (and, spliced, with
			 * new sequence numbers) */
			pipeline_end_flow(worker, reference >> 1);
			new_flow(worker, port, m, info);
			return;
		}
		if (flow->splice) {
			/* a live spliced connection does not take a SYN: forged, or stale */
			pipeline_drop(worker, m, PACKET_DROP_TCP_UNEXPECTED_SYN);
			return;
		}
	}
	flow->last_seen = worker->now;
	if (info->protocol == IPPROTO_TCP)
		if (unlikely(!flow_track_tcp(&worker->flows, flow, direction, info->tcp_flags,
					     info->tcp_sequence)))
			worker->stats.rst_out_of_window++;
	if (direction == FLOW_FORWARD) {
		service->packets_in++;
		service->bytes_in += m->pkt_len;
		backend->packets_in++;
		backend->bytes_in += m->pkt_len;
		nat_to_backend(frame, info, flow->backend_address, flow->backend_port);
		if (unlikely(flow->splice))
			synproxy_splice_to_backend(flow, frame, info);
		pipeline_send_to_neighbor(worker, m, flow->neighbor);
	} else {
		if (unlikely(flow->splice) && !synproxy_splice_to_client(worker, flow, m, info))
			return;
		service->packets_out++;
		service->bytes_out += m->pkt_len;
		backend->packets_out++;
		backend->bytes_out += m->pkt_len;
		nat_to_client(frame, info, flow->vip, flow->vip_port);
		pipeline_send_to_neighbor(worker, m, worker->ports[PORT_PUBLIC].gateway_neighbor);
	}
}

/*
 * The flow key of a parsed TCP/UDP frame, and its hash.  Built from the
 * frame's bytes as two 8-byte words and stored as such: assembled from the
 * fields packet_parse() just stored, its 8-byte halves would be loaded across
 * several smaller stores still in flight, which the CPU cannot forward.
 */
static inline void
flow_key_from_frame(const uint8_t *frame, const struct packet_info *info, struct flow_key *key,
		    uint32_t *hash)
{
#if RTE_BYTE_ORDER == RTE_LITTLE_ENDIAN
	uint64_t words[2];
	uint32_t ports;

	memcpy(&words[0], frame + info->l3_offset + NAT_IP_SOURCE, 8);   /* source, destination */
	memcpy(&ports, frame + info->l4_offset, 4);                     /* both ports */
	words[1] = ports | (uint64_t)info->protocol << 32;               /* protocol, zero pad */
	memcpy(key, words, sizeof(words));
	*hash = flow_key_hash_words(words[0], words[1]);
#else
	(void)frame;
	*key = (struct flow_key){ info->source, info->destination, info->source_port,
				  info->destination_port, info->protocol, {0} };
	*hash = flow_key_hash(key);
#endif
}

uint32_t
pipeline_flow_hash(uint32_t source, uint32_t destination, uint16_t source_port,
		   uint16_t destination_port, uint8_t protocol)
{
	uint32_t hash = rte_hash_crc_4byte(source, MAGLEV_SEED);
	hash = rte_hash_crc_4byte(destination, hash);
	hash = rte_hash_crc_4byte((uint32_t)source_port << 16 | destination_port, hash);
	return rte_hash_crc_4byte(protocol, hash);
}

/* The source-IP key stored as the one 8-byte word the table's hash reads:
 * built field by field, the read would wait for the smaller stores (a
 * store-forwarding stall on every new connection). */
static inline void
persist_key_store(struct persist_key *key, uint32_t client, uint16_t service)
{
#if RTE_BYTE_ORDER == RTE_LITTLE_ENDIAN
	uint64_t word = client | (uint64_t)service << 32;

	RTE_BUILD_BUG_ON(sizeof(*key) != sizeof(word));
	memcpy(key, &word, sizeof(word));
#else
	*key = (struct persist_key){ client, service, 0 };
#endif
}

/*
 * Source-IP persistence: a live entry whose backend may still take flows wins;
 * otherwise Maglev on the client prefix picks, and the entry is (re)written.
 * Sets *entry to the persistence entry the new flow keeps alive.
 */
int
pipeline_schedule_source_ip(struct worker *worker, unsigned service_index, uint32_t source,
			    uint32_t *entry)
{
	const struct services *services = worker->services;
	const struct runtime_service *service = &services->services[service_index];
	struct service_stats *stats = &worker->stats.services[service->id];
	struct persist_key key;
	persist_key_store(&key, source & service->source_mask, service->id);
	uint64_t expires = worker->now + (uint64_t)service->persist_timeout_s * worker->hz;
	int position = persist_lookup(&worker->persist, &key);

	if (position >= 0) {
		struct persist_entry *persisted = &worker->persist.entries[position];
		const struct runtime_backend *kept = services_backend_by_id(services, persisted->backend);
		if (kept && kept->active) {
			persisted->expires = expires;
			*entry = (uint32_t)position;
			stats->persist_hits++;
			return services->backend_index[persisted->backend];
		}
	}
	stats->persist_misses++;
	int backend = pipeline_maglev_pick(services, service, rte_hash_crc_4byte(key.client, MAGLEV_SEED));
	if (backend < 0)
		return -1;
	position = persist_insert(&worker->persist, &key, services->backends[backend].id, expires);
	if (position >= 0) {
		worker->stats.persist_inserted++;
		*entry = (uint32_t)position;
	}
	return backend;
}

int
pipeline_schedule_plain(struct worker *worker, unsigned service_index, uint32_t source,
			uint32_t destination, uint16_t source_port, uint16_t destination_port,
			uint8_t protocol, uint32_t *entry)
{
	const struct runtime_service *service = &worker->services->services[service_index];

	if (service->persistence == CONFIG_PERSIST_SOURCE_IP)
		return pipeline_schedule_source_ip(worker, service_index, source, entry);
	return pipeline_maglev_pick(worker->services, service,
				    pipeline_flow_hash(source, destination, source_port,
						       destination_port, protocol));
}

void
pipeline_count_new_flow(struct worker *worker, const struct flow *flow)
{
	if (flow->persist_entry != FLOW_NO_PERSIST)
		worker->persist.entries[flow->persist_entry].flows++;
	worker->stats.services[flow->service].new_flows++;
	worker->stats.backends[flow->backend].new_flows++;
}

static inline bool
opens_tcp_flow(uint8_t tcp_flags)
{
	return (tcp_flags & (RTE_TCP_SYN_FLAG | RTE_TCP_ACK_FLAG | RTE_TCP_RST_FLAG | RTE_TCP_FIN_FLAG))
	       == RTE_TCP_SYN_FLAG;
}

/*
 * Whether a TCP packet without a flow, to a plain service that may use SYN
 * cookies, goes to the cookie path (synproxy.h): its SYNs while the service is
 * on "always" or the worker is under overload (overload.h), and every ACK, whose
 * cookie may come from a moment of overload that has passed (a wrong one is
 * refused there, as it would be here).  Everything else takes the plain path.
 */
static inline bool
answers_with_cookie(struct worker *worker, const struct runtime_service *service, uint8_t tcp_flags)
{
	uint8_t flags = tcp_flags & (RTE_TCP_SYN_FLAG | RTE_TCP_ACK_FLAG | RTE_TCP_RST_FLAG |
				     RTE_TCP_FIN_FLAG);

	if (flags != RTE_TCP_SYN_FLAG)
		return (flags & (RTE_TCP_SYN_FLAG | RTE_TCP_RST_FLAG | RTE_TCP_ACK_FLAG)) ==
		       RTE_TCP_ACK_FLAG;
	if (service->syn_cookies == CONFIG_SYN_COOKIES_ALWAYS)
		return true;
	if (likely(worker->overload.level == OVERLOAD_NONE))
		return false;
	worker->overload.stats.syns_cookied++;
	return true;
}

/* A packet that matched no flow: admit it to a service or drop it, counted. */
static void
new_flow(struct worker *worker, unsigned port, struct rte_mbuf *m, const struct packet_info *info)
{
	const struct services *services = worker->services;

	if (unlikely(port != PORT_PUBLIC &&
		     worker->ports[PORT_PUBLIC].port_id != worker->ports[PORT_PRIVATE].port_id)) {
		pipeline_drop(worker, m, PACKET_DROP_WRONG_SIDE);   /* clients are on the public side */
		return;
	}
	int service_index = services_find(services, info->destination, info->destination_port,
					  info->protocol);
	if (service_index < 0) {
		pipeline_drop(worker, m, services_is_vip(services, info->destination) ?
				      PACKET_DROP_NO_SERVICE : PACKET_DROP_NOT_FOR_US);
		return;
	}
	const struct runtime_service *service = &services->services[service_index];
	if (!services_source_allowed(service, info->source)) {
		pipeline_drop(worker, m, PACKET_DROP_ACL_DENIED);
		return;
	}
	if (service->persistence == CONFIG_PERSIST_SSL_SESSION) {
		synproxy_no_flow(worker, m, info, (unsigned)service_index);
		return;
	}
	if (info->protocol == IPPROTO_TCP && service->syn_cookies != CONFIG_SYN_COOKIES_NEVER &&
	    answers_with_cookie(worker, service, info->tcp_flags)) {
		synproxy_no_flow(worker, m, info, (unsigned)service_index);
		return;
	}
	if (info->protocol == IPPROTO_TCP && !opens_tcp_flow(info->tcp_flags)) {
		pipeline_drop(worker, m, PACKET_DROP_TCP_NO_FLOW);
		return;
	}
	if (unlikely(worker->overload.level == OVERLOAD_REFUSE_NEW)) {
		pipeline_refuse_new(worker, m);
		return;
	}

	uint32_t persist_entry = FLOW_NO_PERSIST;
	int backend_index = pipeline_schedule_plain(worker, (unsigned)service_index, info->source,
						    info->destination, info->source_port,
						    info->destination_port, info->protocol,
						    &persist_entry);
	if (backend_index < 0) {
		pipeline_drop(worker, m, PACKET_DROP_NO_BACKEND);
		return;
	}
	const struct runtime_backend *backend = &services->backends[backend_index];
	struct flow flow = {
		.last_seen = worker->now,
		.client = info->source,
		.vip = info->destination,
		.backend_address = backend->address,
		.client_port = info->source_port,
		.vip_port = info->destination_port,
		.backend_port = services_backend_port(service, backend),
		.service = service->id,
		.backend = backend->id,
		.protocol = info->protocol,
		.state = info->protocol == IPPROTO_TCP ? FLOW_TCP_SYN : FLOW_UDP,
		.persist_entry = persist_entry,
		.neighbor = backend->neighbor,
		.binding = FLOW_NO_BINDING,
	};
	int index = flow_insert(&worker->flows, &flow);
	if (index == -EEXIST) {
		/* The same SYN twice in one burst: the first created the flow. */
		struct flow_key key;
		flow_key_forward(&flow, &key);
		uint32_t reference = flow_lookup(&worker->flows, &key);
		if (reference != UINT32_MAX) {
			forward_flow(worker, port, m, info, reference);
			return;
		}
		/* A closing flow from this client port to the same backend (through
		 * another VIP) holds the reverse key: it is over, let it go. */
		flow_key_reverse(&flow, &key);
		if (pipeline_evict_closing(worker, &key))
			index = flow_insert(&worker->flows, &flow);
	}
	if (index < 0) {
		pipeline_drop(worker, m, index == -ENOSPC ? PACKET_DROP_FLOW_TABLE_FULL :
							    PACKET_DROP_FLOW_CONFLICT);
		return;
	}
	worker->stats.flows_created++;
	pipeline_count_new_flow(worker, &flow);
	forward_flow(worker, port, m, info, (uint32_t)index << 1 | FLOW_FORWARD);
}

void
pipeline_process_burst(struct worker *worker, unsigned port, struct rte_mbuf **packets,
		       uint16_t count)
{
	struct packet_info info[PIPELINE_BURST];
	struct flow_key keys[PIPELINE_BURST];
	const struct flow_key *key_pointers[PIPELINE_BURST];
	uint32_t references[PIPELINE_BURST];
	uint32_t hashes[PIPELINE_BURST];
	uint8_t lookup_packet[PIPELINE_BURST];
	unsigned lookups = 0;
	struct port_stats *port_stats = &worker->stats.ports[port];

	for (unsigned i = 0; i < PREFETCH_OFFSET && i < count; i++)
		rte_prefetch0(rte_pktmbuf_mtod(packets[i], void *));

	/* Stage 1: parse and classify (ARP and ICMP go to the slow path); hash
	 * each key and start fetching its flow-table bucket. */
	for (unsigned i = 0; i < count; i++) {
		struct rte_mbuf *m = packets[i];
		if (i + PREFETCH_OFFSET < count)
			rte_prefetch0(rte_pktmbuf_mtod(packets[i + PREFETCH_OFFSET], void *));
		port_stats->rx_packets++;
		port_stats->rx_bytes += m->pkt_len;

		enum packet_reason reason = packet_parse(rte_pktmbuf_mtod(m, uint8_t *),
							 rte_pktmbuf_data_len(m), &info[i]);
		if (unlikely(reason != PACKET_OK)) {
			pipeline_drop(worker, m, reason);
			continue;
		}
		if (unlikely(info[i].kind == PACKET_KIND_ARP)) {
			arp_input(worker, port, m);
			continue;
		}
		if (unlikely(info[i].protocol == IPPROTO_ICMP)) {
			icmp_input(worker, port, m, &info[i]);
			continue;
		}
		flow_key_from_frame(rte_pktmbuf_mtod(m, const uint8_t *), &info[i], &keys[lookups],
				    &hashes[lookups]);
		key_pointers[lookups] = &keys[lookups];
		flow_prefetch_bucket(&worker->flows, hashes[lookups]);
		lookup_packet[lookups++] = (uint8_t)i;
	}
	if (lookups == 0)
		return;

	/* Stage 2: one bulk lookup.  Stage 1 started fetching every bucket; the
	 * lookup fetches every candidate entry before it reads any: with a big
	 * table the burst's misses overlap instead of each packet waiting for
	 * its own, and the entries stage 3 works on are in cache
	 * (docs/benchmarking.md). */
	flow_lookup_bulk_hashed(&worker->flows, key_pointers, hashes, lookups, references);
	uint32_t changes = worker->flows.changes;

	/* Stage 3: NAT known flows, admit or drop new ones.  An earlier packet of
	 * this burst may have created or ended a flow (a handshake ACK and its
	 * hello, two RSTs): then the bulk results are stale and each later
	 * packet is looked up again. */
	for (unsigned j = 0; j < lookups; j++) {
		unsigned i = lookup_packet[j];
		uint32_t reference = references[j];
		if (unlikely(worker->flows.changes != changes))
			reference = flow_lookup(&worker->flows, key_pointers[j]);
		if (likely(reference != UINT32_MAX))
			forward_flow(worker, port, packets[i], &info[i], reference);
		else
			new_flow(worker, port, packets[i], &info[i]);
	}
}

unsigned
pipeline_expire(struct worker *worker, unsigned budget)
{
	unsigned expired = flow_expire(&worker->flows, worker->now, budget, flow_expired, worker);

	overload_update(worker);
	worker->stats.flows_expired += expired;
	worker->stats.persist_expired += persist_expire(&worker->persist, worker->now, budget);
	if (worker->synproxy)
		synproxy_expire(worker, budget);
	return expired;
}
