/*
 * synproxy.c: SSL-session persistence by TCP delayed binding.  The stages and
 * their contract are in synproxy.h; the SYN cookie in syncookie.h; the TLS
 * parsing in tls_hello.h.
 *
 * Sequence spaces.  The client's bytes keep their sequence numbers end to end:
 * the SYN to the backend carries the client's ISN.  The backend's do not: the
 * client was given our cookie as ISN, so backend -> client seq and client ->
 * backend ack (and SACK blocks) move by sequence_delta = cookie - backend ISN.
 * Timestamps work the same way: the backend's TSvals are mapped onto our clock
 * at the moment of its SYN-ACK, so they never go backwards for the client.
 * Windows are rescaled when the two sides' window scales differ.
 *
 * Everything here runs on the worker that owns the flow; packets this file
 * originates (cookies, ACKs, the SYN, the replay, RSTs) are built in fresh
 * mbufs with full checksums: they are few, and correctness beats cycles.
 */
#include "synproxy.h"

#include <errno.h>
#include <stddef.h>
#include <string.h>

#include <netinet/in.h>
#include <rte_byteorder.h>
#include <rte_hash_crc.h>
#include <rte_malloc.h>
#include <rte_mbuf.h>
#include <rte_tcp.h>

#include "nat.h"
#include "pipeline.h"
#include "worker.h"

#define SYN_RTO_MS          500    /* backend SYN retransmission interval */
#define SYN_RETRIES         3      /* then the client gets a RST */
#define REPLAY_RTO_MS       300
#define REPLAY_RETRIES      5
#define LEARN_TIMEOUT_MS    10000
#define RST_PER_SECOND      1000   /* RSTs answering bad cookies, per worker */
#define TCP_HEADER_LENGTH   20
#define TCP_SEQ_OFFSET      4
#define TCP_ACK_OFFSET      8
#define TCP_FLAGS_OFFSET    13
#define TCP_WINDOW_OFFSET   14
#define TCP_CHECKSUM_OFFSET 16
#define TIMESTAMP_OPTION_LENGTH 12   /* NOP NOP kind len TSval TSecr */

/* --- small helpers ------------------------------------------------------- */

static inline uint32_t load_be32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return rte_be_to_cpu_32(v); }
static inline uint16_t load_be16(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return rte_be_to_cpu_16(v); }

/* Signed distance a - b in sequence space. */
static inline int32_t seq_diff(uint32_t a, uint32_t b) { return (int32_t)(a - b); }

static inline uint32_t
clock_ms(const struct worker *worker)
{
	return (uint32_t)(worker->now / worker->tsc_per_ms);
}

static inline struct binding *
binding_of(struct worker *worker, const struct flow *flow)
{
	return &worker->synproxy->bindings[flow->binding];
}

static inline uint8_t *
tcp_header(struct rte_mbuf *m, const struct packet_info *info)
{
	return rte_pktmbuf_mtod(m, uint8_t *) + info->l4_offset;
}

static inline unsigned
tcp_header_length(const uint8_t *tcp)
{
	return (unsigned)(tcp[12] >> 4) * 4;
}

static inline unsigned
payload_length(const struct packet_info *info, const uint8_t *tcp)
{
	return info->l3_length - (info->l4_offset - info->l3_offset) - tcp_header_length(tcp);
}

/* --- building segments ---------------------------------------------------- */

struct segment {
	uint32_t source, destination;          /* network order */
	uint16_t source_port, destination_port; /* network order */
	uint32_t seq, ack;                     /* host order */
	uint8_t flags;
	uint16_t window;                       /* raw field, host order */
	const struct tcp_syn_options *syn;     /* SYN / SYN-ACK options, or NULL */
	bool timestamps;                       /* non-SYN: add TSval/TSecr */
	uint32_t tsval, tsecr;
	const uint8_t *payload;
	uint16_t payload_length;
};

/* A fresh frame for `segment`, MACs left for pipeline_send; NULL when the
 * mempool is empty. */
static struct rte_mbuf *
build_segment(struct worker *worker, const struct segment *segment)
{
	uint8_t options[40];
	unsigned options_length = 0;

	if (segment->syn) {
		options_length = tcp_write_syn_options(options, segment->syn);
	} else if (segment->timestamps) {
		uint32_t tsval = rte_cpu_to_be_32(segment->tsval);
		uint32_t tsecr = rte_cpu_to_be_32(segment->tsecr);
		options[0] = TCP_OPTION_NOP;
		options[1] = TCP_OPTION_NOP;
		options[2] = TCP_OPTION_TIMESTAMP;
		options[3] = 10;
		memcpy(options + 4, &tsval, 4);
		memcpy(options + 8, &tsecr, 4);
		options_length = TIMESTAMP_OPTION_LENGTH;
	}
	unsigned tcp_length = TCP_HEADER_LENGTH + options_length;
	unsigned ip_length = PACKET_IPV4_HEADER_LENGTH + tcp_length + segment->payload_length;
	unsigned frame_length = PACKET_ETHER_HEADER_LENGTH + ip_length;
	struct rte_mbuf *m = rte_pktmbuf_alloc(worker->mempool);
	if (!m)
		return NULL;
	uint8_t *frame = (uint8_t *)rte_pktmbuf_append(m, (uint16_t)(frame_length < 60 ? 60 : frame_length));
	if (!frame) {
		rte_pktmbuf_free(m);
		return NULL;
	}
	/* zero what is not written below: the headers' unset fields and the
	 * padding of a short frame (options and payload are copied in whole) */
	memset(frame, 0, PACKET_ETHER_HEADER_LENGTH + PACKET_IPV4_HEADER_LENGTH + TCP_HEADER_LENGTH);
	if (frame_length < 60)
		memset(frame + frame_length, 0, 60 - frame_length);
	uint16_t value = rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV4);
	memcpy(frame + 12, &value, 2);

	uint8_t *ip = frame + PACKET_ETHER_HEADER_LENGTH;
	ip[0] = 0x45;
	nat_store16(ip + 2, rte_cpu_to_be_16((uint16_t)ip_length));
	ip[6] = 0x40;                          /* DF */
	ip[8] = 64;
	ip[9] = IPPROTO_TCP;
	nat_store32(ip + NAT_IP_SOURCE, segment->source);
	nat_store32(ip + NAT_IP_DESTINATION, segment->destination);
	/* Both checksums are summed from the values just written, not read back:
	 * 4- and 16-byte reads across those 1- to 4-byte stores would wait for
	 * them (store-forwarding stalls).  A 16-bit word of two bytes a, b
	 * sums as rte_cpu_to_be_16(a << 8 | b) on any host. */
	uint64_t ip_sum = (uint64_t)rte_cpu_to_be_16(0x4500) + rte_cpu_to_be_16((uint16_t)ip_length) +
			  rte_cpu_to_be_16(0x4000) + rte_cpu_to_be_16(64 << 8 | IPPROTO_TCP) +
			  segment->source + segment->destination;
	nat_store16(ip + NAT_IP_CHECKSUM, (uint16_t)~checksum_fold(checksum_fold64(ip_sum)));

	uint8_t *tcp = ip + PACKET_IPV4_HEADER_LENGTH;
	nat_store16(tcp, segment->source_port);
	nat_store16(tcp + 2, segment->destination_port);
	nat_store32(tcp + TCP_SEQ_OFFSET, rte_cpu_to_be_32(segment->seq));
	nat_store32(tcp + TCP_ACK_OFFSET, rte_cpu_to_be_32(segment->ack));
	tcp[12] = (uint8_t)((tcp_length / 4) << 4);
	tcp[TCP_FLAGS_OFFSET] = segment->flags;
	nat_store16(tcp + TCP_WINDOW_OFFSET, rte_cpu_to_be_16(segment->window));
	memcpy(tcp + TCP_HEADER_LENGTH, options, options_length);
	if (segment->payload_length)
		memcpy(tcp + tcp_length, segment->payload, segment->payload_length);

	uint64_t header_sum = (uint64_t)segment->source_port + segment->destination_port +
			      rte_cpu_to_be_32(segment->seq) + rte_cpu_to_be_32(segment->ack) +
			      rte_cpu_to_be_16((uint16_t)((tcp_length / 4) << 12 | segment->flags)) +
			      rte_cpu_to_be_16(segment->window) +
			      checksum_pseudo_header(segment->source, segment->destination, IPPROTO_TCP,
						     (uint16_t)(tcp_length + segment->payload_length));
	/* options and payload: each copied in by one memcpy, read back whole */
	uint32_t sum = checksum_partial(tcp + TCP_HEADER_LENGTH, options_length + segment->payload_length,
					checksum_fold64(header_sum));
	nat_store16(tcp + TCP_CHECKSUM_OFFSET, (uint16_t)~checksum_fold(sum));
	return m;
}

/* A replay fans out to many segments: never let a full queue drop them. */
static void
make_room(struct worker *worker)
{
	if (worker->tx[PORT_PUBLIC].count >= PIPELINE_TX_MAX - 1 ||
	    worker->tx[PORT_PRIVATE].count >= PIPELINE_TX_MAX - 1)
		worker_flush(worker);
}

static void
send_to_client(struct worker *worker, const struct segment *segment)
{
	make_room(worker);
	struct rte_mbuf *m = build_segment(worker, segment);
	if (m)
		pipeline_send_to_neighbor(worker, m, worker->ports[PORT_PUBLIC].gateway_neighbor);
}

static void
send_to_backend(struct worker *worker, const struct flow *flow, const struct segment *segment)
{
	make_room(worker);
	struct rte_mbuf *m = build_segment(worker, segment);
	if (m)
		pipeline_send_to_neighbor(worker, m, flow->neighbor);
}

/* A segment from the VIP to the client of `flow`. */
static struct segment
to_client(const struct flow *flow, uint32_t seq, uint32_t ack, uint8_t flags)
{
	return (struct segment){ .source = flow->vip, .destination = flow->client,
		.source_port = flow->vip_port, .destination_port = flow->client_port,
		.seq = seq, .ack = ack, .flags = flags };
}

/* A segment from the client of `flow` to its backend. */
static struct segment
to_backend(const struct flow *flow, uint32_t seq, uint32_t ack, uint8_t flags)
{
	return (struct segment){ .source = flow->client, .destination = flow->backend_address,
		.source_port = flow->client_port, .destination_port = flow->backend_port,
		.seq = seq, .ack = ack, .flags = flags };
}

/* --- bindings ------------------------------------------------------------- */

int
synproxy_create(struct worker *worker, const struct config *config)
{
	uint32_t capacity = config->dataplane.binding_capacity;
	struct synproxy *proxy = rte_zmalloc("synproxy", sizeof(*proxy), RTE_CACHE_LINE_SIZE);
	char name[32];

	if (!proxy)
		return -ENOMEM;
	worker->synproxy = proxy;
	proxy->bindings = rte_zmalloc("bindings", sizeof(struct binding) * capacity, RTE_CACHE_LINE_SIZE);
	proxy->free_stack = rte_malloc("binding_free", sizeof(uint16_t) * capacity, 0);
	proxy->active = rte_malloc("binding_active", sizeof(uint16_t) * capacity, 0);
	snprintf(name, sizeof(name), "sessions%u", worker->id);
	if (!proxy->bindings || !proxy->free_stack || !proxy->active || capacity > FLOW_NO_BINDING ||
	    persist_create(&proxy->sessions, name, config->dataplane.session_capacity,
			   sizeof(struct session_key), (int)rte_socket_id()) < 0 ||
	    syncookie_secret_init(&proxy->secret) < 0) {
		synproxy_destroy(worker);
		return -ENOMEM;
	}
	proxy->capacity = capacity;
	for (uint32_t i = 0; i < capacity; i++)
		proxy->free_stack[i] = (uint16_t)(capacity - 1 - i);
	proxy->free_top = capacity;
	proxy->inspect_timeout = (uint64_t)config->dataplane.inspect_timeout_ms * worker->tsc_per_ms;
	proxy->rst_tokens = RST_PER_SECOND;
	return 0;
}

void
synproxy_destroy(struct worker *worker)
{
	struct synproxy *proxy = worker->synproxy;

	if (!proxy)
		return;
	persist_destroy(&proxy->sessions);
	rte_free(proxy->bindings);
	rte_free(proxy->free_stack);
	rte_free(proxy->active);
	rte_free(proxy);
	worker->synproxy = NULL;
}

static void
binding_release(struct worker *worker, struct flow *flow)
{
	struct synproxy *proxy = worker->synproxy;
	struct binding *binding = binding_of(worker, flow);

	/* out of the active list: the last one takes its place */
	uint16_t moved = proxy->active[--proxy->active_count];
	proxy->active[binding->active_slot] = moved;
	proxy->bindings[moved].active_slot = binding->active_slot;
	binding->state = BINDING_FREE;
	proxy->free_stack[proxy->free_top++] = flow->binding;
	flow->binding = FLOW_NO_BINDING;
}

void
synproxy_flow_gone(struct worker *worker, struct flow *flow)
{
	binding_release(worker, flow);
}

/* End a connection that cannot be bound: RST the client, forget the flow. */
static void
abort_binding(struct worker *worker, struct flow *flow, struct binding *binding)
{
	struct segment rst = to_client(flow, binding->our_isn + 1, binding->client_isn + 1 + binding->length,
				       RTE_TCP_RST_FLAG | RTE_TCP_ACK_FLAG);
	send_to_client(worker, &rst);
	worker->synproxy->stats.rst_sent++;
	worker->synproxy->stats.bindings_aborted++;
	pipeline_end_flow(worker, binding->flow);
}

/* --- step 1: the cookie --------------------------------------------------- */

static uint32_t
cookie_tick(const struct worker *worker)
{
	return (uint32_t)(worker->now / (worker->hz * SYNCOOKIE_TICK_S));
}

static void
answer_syn(struct worker *worker, struct rte_mbuf *m, const struct packet_info *info)
{
	struct synproxy *proxy = worker->synproxy;
	const uint8_t *tcp = tcp_header(m, info);
	struct tcp_syn_options client, ours;
	struct syncookie_tuple tuple = { info->source, info->destination,
					 info->source_port, info->destination_port };
	uint32_t client_isn = load_be32(tcp + TCP_SEQ_OFFSET);

	tcp_parse_syn_options(tcp, tcp_header_length(tcp), &client);
	uint32_t cookie = syncookie_make(&proxy->secret, &tuple, client_isn, cookie_tick(worker), &client);
	/* Offer only what the client offered; never reflect other options. */
	ours = (struct tcp_syn_options){
		.mss = SYNPROXY_MSS,
		.wscale = client.wscale == TCP_WSCALE_NONE ? TCP_WSCALE_NONE : SYNPROXY_WSCALE,
		.sack_permitted = client.sack_permitted,
		.timestamps = client.timestamps,
		.tsval = clock_ms(worker),
		.tsecr = client.tsval,
	};
	struct segment synack = {
		.source = info->destination, .destination = info->source,
		.source_port = info->destination_port, .destination_port = info->source_port,
		.seq = cookie, .ack = client_isn + 1,
		.flags = RTE_TCP_SYN_FLAG | RTE_TCP_ACK_FLAG,
		.window = BINDING_HELLO_CAP, .syn = &ours,
	};
	rte_pktmbuf_free(m);
	send_to_client(worker, &synack);
	proxy->stats.cookies_sent++;
}

static bool
rst_allowed(struct worker *worker)
{
	struct synproxy *proxy = worker->synproxy;
	uint64_t elapsed_ms = (worker->now - proxy->rst_last) / worker->tsc_per_ms;

	if (elapsed_ms) {
		proxy->rst_tokens += elapsed_ms * RST_PER_SECOND / 1000;
		if (proxy->rst_tokens > RST_PER_SECOND)
			proxy->rst_tokens = RST_PER_SECOND;
		proxy->rst_last = worker->now;
	}
	if (proxy->rst_tokens == 0) {
		proxy->stats.rst_rate_limited++;
		return false;
	}
	proxy->rst_tokens--;
	return true;
}

/* An ACK with no flow whose cookie is wrong: RST it (RFC 793: seq = its ack)
 * if it came to an ssl-session service, whose clients always get cookies; a
 * plain service stays as silent as for any other segment without a flow
 * (docs/architecture.md, inbound rules). */
static void
refuse_ack(struct worker *worker, struct rte_mbuf *m, const struct packet_info *info,
	   const struct runtime_service *service)
{
	const uint8_t *tcp = tcp_header(m, info);
	struct segment rst = {
		.source = info->destination, .destination = info->source,
		.source_port = info->destination_port, .destination_port = info->source_port,
		.seq = load_be32(tcp + TCP_ACK_OFFSET), .flags = RTE_TCP_RST_FLAG,
	};

	worker->synproxy->stats.cookies_invalid++;
	pipeline_drop(worker, m, PACKET_DROP_TCP_NO_FLOW);
	if (service->persistence == CONFIG_PERSIST_SSL_SESSION && rst_allowed(worker)) {
		send_to_client(worker, &rst);
		worker->synproxy->stats.rst_sent++;
	}
}

static void client_data(struct worker *worker, struct rte_mbuf *m, const struct packet_info *info,
			struct flow *flow, struct binding *binding);
static bool bind_backend(struct worker *worker, struct flow *flow, struct binding *binding,
			 int backend);
static int plain_backend(struct worker *worker, struct flow *flow);
static void note_client_options(struct binding *binding, const uint8_t *tcp);

/* A valid cookie: the client's handshake is complete; start a binding. */
static void
start_binding(struct worker *worker, struct rte_mbuf *m, const struct packet_info *info,
	      unsigned service, const struct tcp_syn_options *client, uint32_t client_isn,
	      uint32_t cookie)
{
	struct synproxy *proxy = worker->synproxy;

	if (proxy->free_top == 0) {
		proxy->stats.bindings_full++;
		rte_pktmbuf_free(m);   /* its data is resent (a bare ACK never is): maybe to a free binding */
		return;
	}
	if (unlikely(worker->overload.level == OVERLOAD_REFUSE_NEW)) {
		pipeline_refuse_new(worker, m);   /* likewise */
		return;
	}
	struct flow flow = {
		.last_seen = worker->now, .client = info->source, .vip = info->destination,
		.client_port = info->source_port, .vip_port = info->destination_port,
		.service = worker->services->services[service].id, .protocol = IPPROTO_TCP,
		.state = FLOW_TCP_BINDING,
		.persist_entry = FLOW_NO_PERSIST, .neighbor = NEIGHBOR_NONE,
		.binding = proxy->free_stack[proxy->free_top - 1],
	};
	int index = flow_insert_forward(&worker->flows, &flow);
	if (index == -EEXIST) {
		/* the handshake's ACK and the hello in one burst: the ACK made the flow */
		struct flow_key key;
		flow_key_forward(&flow, &key);
		uint32_t reference = flow_lookup(&worker->flows, &key);
		if (reference != UINT32_MAX && flow_at(&worker->flows, reference)->state == FLOW_TCP_BINDING) {
			synproxy_binding_packet(worker, m, info, reference);
			return;
		}
	}
	if (index < 0) {
		pipeline_drop(worker, m, index == -ENOSPC ? PACKET_DROP_FLOW_TABLE_FULL :
							    PACKET_DROP_FLOW_CONFLICT);
		return;
	}
	proxy->free_top--;
	struct binding *binding = &proxy->bindings[flow.binding];
	memset(binding, 0, offsetof(struct binding, scan));
	binding->active_slot = (uint16_t)proxy->active_count;
	proxy->active[proxy->active_count++] = flow.binding;
	binding->flow = (uint32_t)index;
	binding->state = BINDING_INSPECTING;
	binding->client = *client;
	binding->client_isn = client_isn;
	binding->our_isn = cookie;
	binding->inspect_deadline = worker->now + proxy->inspect_timeout;
	worker->stats.flows_created++;
	struct flow *created = &worker->flows.flows[index];
	if (worker->services->services[service].persistence != CONFIG_PERSIST_SSL_SESSION) {
		/* a plain service has nothing to read: connect now, as a SYN
		 * forwarded at once would have; what the client sends meanwhile
		 * is buffered and replayed like a hello */
		proxy->stats.cookie_connections++;
		note_client_options(binding, tcp_header(m, info));   /* the SYN's window and TSval */
		if (!bind_backend(worker, created, binding, plain_backend(worker, created))) {
			rte_pktmbuf_free(m);
			return;
		}
	} else {
		proxy->stats.bindings_started++;
	}
	client_data(worker, m, info, created, binding);
}

void
synproxy_no_flow(struct worker *worker, struct rte_mbuf *m, const struct packet_info *info,
		 unsigned service)
{
	struct synproxy *proxy = worker->synproxy;
	uint8_t flags = info->tcp_flags & (RTE_TCP_SYN_FLAG | RTE_TCP_ACK_FLAG | RTE_TCP_RST_FLAG |
					   RTE_TCP_FIN_FLAG);

	if (flags == RTE_TCP_SYN_FLAG) {
		answer_syn(worker, m, info);
		return;
	}
	if ((flags & (RTE_TCP_ACK_FLAG | RTE_TCP_SYN_FLAG | RTE_TCP_RST_FLAG)) != RTE_TCP_ACK_FLAG) {
		pipeline_drop(worker, m, PACKET_DROP_TCP_NO_FLOW);
		return;
	}
	const uint8_t *tcp = tcp_header(m, info);
	struct tcp_syn_options client = { 0 };
	struct syncookie_tuple tuple = { info->source, info->destination,
					 info->source_port, info->destination_port };
	uint32_t client_isn = load_be32(tcp + TCP_SEQ_OFFSET) - 1;
	uint32_t cookie = load_be32(tcp + TCP_ACK_OFFSET) - 1;
	if (!syncookie_check(&proxy->secret, &tuple, client_isn, cookie, cookie_tick(worker), &client)) {
		refuse_ack(worker, m, info, &worker->services->services[service]);
		return;
	}
	proxy->stats.cookies_valid++;
	start_binding(worker, m, info, service, &client, client_isn, cookie);
}

/* --- step 2: reading the ClientHello -------------------------------------- */

static uint16_t
inspect_window(const struct binding *binding)
{
	uint32_t room = BINDING_CLIENT_BUFFER - binding->length;
	if (binding->client.wscale != TCP_WSCALE_NONE)
		room >>= SYNPROXY_WSCALE;
	return (uint16_t)(room > 65535 ? 65535 : room);
}

static void
ack_client(struct worker *worker, const struct flow *flow, const struct binding *binding)
{
	struct segment ack = to_client(flow, binding->our_isn + 1,
				       binding->client_isn + 1 + binding->length, RTE_TCP_ACK_FLAG);
	ack.window = inspect_window(binding);
	ack.timestamps = binding->client.timestamps;
	ack.tsval = clock_ms(worker);
	ack.tsecr = binding->client_tsval;
	send_to_client(worker, &ack);
}

static void decide(struct worker *worker, struct flow *flow, struct binding *binding,
		   enum tls_reason reason);

/* Take the in-order part of a client segment into the buffer. */
static bool
buffer_client_bytes(struct binding *binding, const uint8_t *tcp, unsigned length)
{
	uint32_t seq = load_be32(tcp + TCP_SEQ_OFFSET);
	int32_t offset = seq_diff(seq, binding->client_isn + 1);
	const uint8_t *payload = tcp + tcp_header_length(tcp);

	if (length == 0 || offset > binding->length || offset + (int32_t)length <= binding->length)
		return false;   /* nothing new, or a gap: the client will retransmit */
	if (offset < 0) {
		payload -= offset;
		length += (unsigned)offset;
		offset = 0;
	}
	unsigned skip = binding->length - (unsigned)offset;
	unsigned room = BINDING_CLIENT_BUFFER - binding->length;
	unsigned take = length - skip < room ? length - skip : room;
	memcpy(binding->data + binding->length, payload + skip, take);
	binding->length = (uint16_t)(binding->length + take);
	return take > 0;
}

static void
note_client_options(struct binding *binding, const uint8_t *tcp)
{
	struct tcp_option_offsets offsets;

	binding->client_window = load_be16(tcp + TCP_WINDOW_OFFSET);
	tcp_find_options(tcp, tcp_header_length(tcp), &offsets);
	if (offsets.timestamp)
		binding->client_tsval = load_be32(tcp + offsets.timestamp + 2);
}

/* Whether a segment's TCP checksum holds.  Only the client bytes a binding
 * buffers are checked: the dataplane acknowledges them itself, so a corrupted
 * segment would never be resent and would reach the backend as it came.
 * What is only forwarded is left to the endpoints, as a router leaves it. */
static bool
tcp_checksum_holds(const struct packet_info *info, const uint8_t *tcp)
{
	uint16_t length = (uint16_t)(info->l3_length - (info->l4_offset - info->l3_offset));
	uint32_t sum = checksum_partial(tcp, length, checksum_pseudo_header(info->source,
									      info->destination,
									      IPPROTO_TCP, length));

	return checksum_fold(sum) == 0xffff;
}

static void
client_data(struct worker *worker, struct rte_mbuf *m, const struct packet_info *info,
	    struct flow *flow, struct binding *binding)
{
	const uint8_t *tcp = tcp_header(m, info);
	unsigned length = payload_length(info, tcp);
	uint8_t flags = info->tcp_flags;

	if (length && unlikely(!tcp_checksum_holds(info, tcp))) {
		pipeline_drop(worker, m, PACKET_DROP_TCP_BAD_CHECKSUM);   /* the client resends it */
		return;
	}
	note_client_options(binding, tcp);
	bool grew = buffer_client_bytes(binding, tcp, length);
	rte_pktmbuf_free(m);
	if (length)
		ack_client(worker, flow, binding);
	if (binding->state != BINDING_INSPECTING || (!grew && !(flags & RTE_TCP_FIN_FLAG)))
		return;
	const uint8_t *hello;
	size_t hello_length;
	enum tls_reason reason = tls_reassemble_client_hello(binding->data, binding->length,
							     worker->synproxy->hello_scratch,
							     BINDING_HELLO_CAP, &hello, &hello_length);
	if (reason == TLS_NEED_MORE && binding->length == BINDING_CLIENT_BUFFER)
		reason = TLS_TOO_LARGE;
	/* A FIN means no more bytes: decide with what there is.  The FIN itself
	 * is not acknowledged, so the client resends it after the splice. */
	if (reason != TLS_NEED_MORE || (flags & RTE_TCP_FIN_FLAG))
		decide(worker, flow, binding, reason);
}

/* --- step 3: the decision ------------------------------------------------- */

/* 8 bytes of `bytes` from `start`, zero past `used`, little-endian order. */
static inline uint64_t
key_data_word(const uint8_t *bytes, unsigned start, unsigned used)
{
	uint64_t word = 0;

	if (start + 8 <= used) {
		memcpy(&word, bytes + start, 8);
		return word;
	}
	for (unsigned b = start; b < used; b++)
		word |= (uint64_t)bytes[b] << (8 * (b - start));
	return word;
}

static void
session_key_bytes(struct session_key *key, uint16_t pool, enum session_kind kind,
		  const uint8_t *bytes, unsigned length)
{
	unsigned used = length > sizeof(key->bytes) ? sizeof(key->bytes) : length;
#if RTE_BYTE_ORDER == RTE_LITTLE_ENDIAN
	/* The same 36 bytes as the memset, fields and memcpy below, assembled
	 * in registers and stored as 8-byte words: the session table hashes the
	 * key in 8-byte reads, which would wait for smaller stores still in
	 * flight (a store-forwarding stall on every lookup and insert). */
	RTE_BUILD_BUG_ON(sizeof(*key) != 36 || offsetof(struct session_key, bytes) != 4);
	uint64_t data[4];
	for (unsigned i = 0; i < 4; i++)
		data[i] = key_data_word(bytes, 8 * i, used);
	uint64_t head = pool | (uint64_t)kind << 16 | (uint64_t)used << 24;
	uint64_t words[4] = { head | data[0] << 32, data[0] >> 32 | data[1] << 32,
			      data[1] >> 32 | data[2] << 32, data[2] >> 32 | data[3] << 32 };
	uint32_t last = (uint32_t)(data[3] >> 32);
	memcpy(key, words, sizeof(words));
	memcpy((uint8_t *)key + sizeof(words), &last, sizeof(last));
#else
	memset(key, 0, sizeof(*key));
	key->pool = pool;
	key->kind = (uint8_t)kind;
	key->length = (uint8_t)used;
	memcpy(key->bytes, bytes, used);
#endif
}

/* A ticket's key: its key name plus a 128-bit digest of the whole ticket. */
static void
session_key_ticket(struct session_key *key, uint16_t pool, const uint8_t *ticket, unsigned length)
{
	static const uint64_t digest_keys[2][2] = { { 0x7465746865723174ull, 0x69636b6574646967ull },
						    { 0x7365636f6e646b65ull, 0x79666f7274696373ull } };
	uint64_t digest[2] = { syncookie_siphash(digest_keys[0], ticket, length),
			       syncookie_siphash(digest_keys[1], ticket, length) };
	uint8_t bytes[32] = { 0 };

	memcpy(bytes, ticket, length < 16 ? length : 16);
	memcpy(bytes + 16, digest, sizeof(digest));
	session_key_bytes(key, pool, SESSION_TICKET, bytes, sizeof(bytes));
}

enum lookup_result { LOOKUP_MISS, LOOKUP_HIT, LOOKUP_DOWN };

static enum lookup_result
lookup(struct worker *worker, const struct session_key *key, const struct runtime_service *service,
       int *backend)
{
	struct persist_table *sessions = &worker->synproxy->sessions;
	int position = persist_lookup(sessions, key);

	if (position < 0)
		return LOOKUP_MISS;
	struct persist_entry *entry = &sessions->entries[position];
	const struct runtime_backend *kept = services_backend_by_id(worker->services, entry->backend);
	if (!kept || !kept->active)
		return LOOKUP_DOWN;
	entry->expires = worker->now + (uint64_t)service->persist_timeout_s * worker->hz;
	*backend = worker->services->backend_index[entry->backend];
	return LOOKUP_HIT;
}

/* Look up a ticket exactly, then by key name.  Counts the hit. */
static enum lookup_result
lookup_ticket(struct worker *worker, const struct runtime_service *service, const uint8_t *ticket,
	      unsigned length, int *backend)
{
	struct synproxy_stats *stats = &worker->synproxy->stats;
	struct session_key key;
	enum lookup_result exact, by_name = LOOKUP_MISS;

	session_key_ticket(&key, service->pool_id, ticket, length);
	exact = lookup(worker, &key, service, backend);
	if (exact == LOOKUP_HIT) {
		stats->hit_ticket++;
		return exact;
	}
	if (length >= TLS_TICKET_KEY_NAME_LENGTH) {
		session_key_bytes(&key, service->pool_id, SESSION_KEY_NAME, ticket, TLS_TICKET_KEY_NAME_LENGTH);
		by_name = lookup(worker, &key, service, backend);
		if (by_name == LOOKUP_HIT) {
			stats->hit_key_name++;
			return by_name;
		}
	}
	return exact == LOOKUP_DOWN || by_name == LOOKUP_DOWN ? LOOKUP_DOWN : LOOKUP_MISS;
}

/* The fallback of DESIGN.md: source IP (default), source IP + SNI, or none. */
static int
fallback_backend(struct worker *worker, struct flow *flow, const struct tls_client_hello *hello)
{
	const struct services *services = worker->services;
	const struct runtime_service *service = services_service_by_id(services, flow->service);

	if (!service)
		return -1;   /* removed by a reload while the hello was read */
	switch (service->fallback) {
	case CONFIG_FALLBACK_SOURCE_IP:
		return pipeline_schedule_source_ip(worker, services->service_index[flow->service],
						   flow->client, &flow->persist_entry);
	case CONFIG_FALLBACK_SOURCE_IP_SNI: {
		uint32_t hash = rte_hash_crc_4byte(flow->client & service->source_mask, 0x5e1u);
		if (hello && hello->sni_length)
			hash = rte_hash_crc(hello->sni, hello->sni_length, hash);
		return pipeline_maglev_pick(services, service, hash);
	}
	default:
		return pipeline_maglev_pick(services, service,
			pipeline_flow_hash(flow->client, flow->vip, flow->client_port, flow->vip_port,
					   IPPROTO_TCP));
	}
}

/* A plain service's connection that came in by cookie: the backend its SYN
 * would have got without one, or -1 (the service left in a reload). */
static int
plain_backend(struct worker *worker, struct flow *flow)
{
	uint16_t index = worker->services->service_index[flow->service];

	if (index == SERVICES_NO_INDEX)
		return -1;
	return pipeline_schedule_plain(worker, index, flow->client, flow->vip, flow->client_port,
				       flow->vip_port, IPPROTO_TCP, &flow->persist_entry);
}

/* Session ID, then ticket (TLS 1.2 extension or TLS 1.3 PSK identity), each
 * exactly and by key name; -1 and the fallback reason counted on a miss. */
static int
persisted_backend(struct worker *worker, struct flow *flow, struct binding *binding,
		  const struct tls_client_hello *hello)
{
	const struct runtime_service *service = services_service_by_id(worker->services, flow->service);
	struct synproxy_stats *stats = &worker->synproxy->stats;
	enum lookup_result result = LOOKUP_MISS;
	bool down = false;
	int backend = -1;

	if (hello->session_id_length) {
		struct session_key key;
		session_key_bytes(&key, service->pool_id, SESSION_ID, hello->session_id,
				  hello->session_id_length);
		result = lookup(worker, &key, service, &backend);
		if (result == LOOKUP_HIT) {
			stats->hit_session_id++;
			return backend;
		}
		down |= result == LOOKUP_DOWN;
	}
	if (hello->ticket_length) {
		result = lookup_ticket(worker, service, hello->ticket, hello->ticket_length, &backend);
		if (result == LOOKUP_HIT)
			return backend;
		down |= result == LOOKUP_DOWN;
	}
	if (hello->psk_identity_length) {
		if (hello->psk_identity_length >= TLS_TICKET_KEY_NAME_LENGTH) {
			memcpy(binding->psk_key_name, hello->psk_identity, TLS_TICKET_KEY_NAME_LENGTH);
			binding->psk_key_name_valid = true;
		}
		result = lookup_ticket(worker, service, hello->psk_identity, hello->psk_identity_length,
				       &backend);
		if (result == LOOKUP_HIT)
			return backend;
		down |= result == LOOKUP_DOWN;
	}
	/* A TLS 1.3 client always sends a random legacy session ID: only a
	 * ticket or PSK says it offered a session. */
	bool offered_session = hello->ticket_length ||
			       (hello->session_id_length && hello->highest_version < TLS_VERSION_1_3);
	if (down)
		stats->fallback_backend_down++;
	else if (hello->psk_identity_length)
		stats->fallback_tls13_unknown_ticket++;
	else if (offered_session)
		stats->fallback_unknown_session++;
	else
		stats->fallback_new_session++;
	return -1;
}

static void
count_fallback(struct synproxy_stats *stats, enum tls_reason reason)
{
	if (reason == TLS_NOT_TLS)
		stats->fallback_not_tls++;
	else if (reason == TLS_TOO_LARGE)
		stats->fallback_too_large++;
	else if (reason == TLS_NEED_MORE)
		stats->fallback_timeout++;
	else
		stats->fallback_malformed++;
}

static void connect_backend(struct worker *worker, struct flow *flow, struct binding *binding);

/* Pick the backend for a binding whose ClientHello scan ended with `reason`. */
static void
decide(struct worker *worker, struct flow *flow, struct binding *binding, enum tls_reason reason)
{
	struct synproxy_stats *stats = &worker->synproxy->stats;
	struct tls_client_hello hello;
	bool have_hello = false;
	int backend = -1;

	if (reason == TLS_OK) {
		const uint8_t *message;
		size_t message_length;
		tls_reassemble_client_hello(binding->data, binding->length, worker->synproxy->hello_scratch,
					    BINDING_HELLO_CAP, &message, &message_length);
		reason = tls_parse_client_hello(message, message_length, &hello);
		have_hello = reason == TLS_OK;
	}
	if (have_hello && services_service_by_id(worker->services, flow->service))
		backend = persisted_backend(worker, flow, binding, &hello);
	else
		count_fallback(stats, reason);
	if (backend < 0)
		backend = fallback_backend(worker, flow, have_hello ? &hello : NULL);
	if (bind_backend(worker, flow, binding, backend))
		stats->bindings_bound++;
}

/* Give the binding's flow `backend` (an index, or -1: none) and connect to it.
 * False when the connection was aborted instead (the flow is gone). */
static bool
bind_backend(struct worker *worker, struct flow *flow, struct binding *binding, int backend)
{
	if (backend < 0) {
		worker->stats.drops[PACKET_DROP_NO_BACKEND]++;
		abort_binding(worker, flow, binding);
		return false;
	}
	const struct runtime_backend *chosen = &worker->services->backends[backend];
	flow->backend = chosen->id;
	flow->backend_address = chosen->address;
	flow->backend_port = services_backend_port(services_service_by_id(worker->services, flow->service),
						   chosen);
	flow->neighbor = chosen->neighbor;
	int rc = flow_add_reverse(&worker->flows, binding->flow);
	if (rc == -EEXIST) {
		struct flow_key key;
		flow_key_reverse(flow, &key);
		if (pipeline_evict_closing(worker, &key))
			rc = flow_add_reverse(&worker->flows, binding->flow);
	}
	if (rc < 0) {
		worker->stats.drops[PACKET_DROP_FLOW_CONFLICT]++;
		flow->backend_address = 0;   /* it has no reverse key to remove, no backend count */
		if (flow->persist_entry != FLOW_NO_PERSIST)
			worker->persist.entries[flow->persist_entry].flows++;   /* end_flow takes it back */
		abort_binding(worker, flow, binding);
		return false;
	}
	pipeline_count_new_flow(worker, flow);
	connect_backend(worker, flow, binding);
	return true;
}

/* --- step 4: connecting to the backend ----------------------------------- */

static void
send_backend_syn(struct worker *worker, const struct flow *flow, const struct binding *binding)
{
	const struct tcp_syn_options *client = &binding->client;
	struct tcp_syn_options options = {
		/* backends sit on 1500-byte links, and replay segments must fit an mbuf */
		.mss = client->mss < SYNPROXY_MSS ? client->mss : SYNPROXY_MSS,
		.wscale = client->wscale,
		.sack_permitted = client->sack_permitted, .timestamps = client->timestamps,
		.tsval = binding->client_tsval,
	};
	struct segment syn = to_backend(flow, binding->client_isn, 0, RTE_TCP_SYN_FLAG);
	uint32_t window = (uint32_t)binding->client_window;

	if (client->wscale != TCP_WSCALE_NONE)
		window <<= client->wscale;
	syn.window = (uint16_t)(window > 65535 ? 65535 : window);
	syn.syn = &options;
	send_to_backend(worker, flow, &syn);
}

static void
connect_backend(struct worker *worker, struct flow *flow, struct binding *binding)
{
	flow->state = FLOW_TCP_CONNECTING;
	binding->state = BINDING_CONNECTING;
	binding->retries = 0;
	binding->deadline = worker->now + SYN_RTO_MS * worker->tsc_per_ms;
	send_backend_syn(worker, flow, binding);
}

/* --- step 5: splice and replay --------------------------------------------- */

static void
send_replay(struct worker *worker, const struct flow *flow, const struct binding *binding)
{
	unsigned options = binding->backend_timestamps ? TIMESTAMP_OPTION_LENGTH : 0;
	unsigned mss = binding->backend_mss < binding->client.mss ? binding->backend_mss : binding->client.mss;
	if (mss > SYNPROXY_MSS)
		mss = SYNPROXY_MSS;
	unsigned chunk = mss > options ? mss - options : 536;
	unsigned offset = 0;
	uint32_t window = binding->client_window;

	/* the backend reads the client's window with the scale the client gave,
	 * unless it refused window scaling */
	window = flow->client_window_shift > 0 ? window << flow->client_window_shift : window;
	do {
		unsigned length = binding->length - offset < chunk ? binding->length - offset : chunk;
		struct segment segment = to_backend(flow, binding->client_isn + 1 + offset,
						    binding->backend_isn + 1,
						    RTE_TCP_ACK_FLAG | (offset + length == binding->length &&
									length ? RTE_TCP_PSH_FLAG : 0));
		segment.window = (uint16_t)(window > 65535 ? 65535 : window);
		segment.timestamps = binding->backend_timestamps;
		segment.tsval = binding->client_tsval;
		segment.tsecr = binding->backend_tsval;
		segment.payload = binding->data + offset;
		segment.payload_length = (uint16_t)length;
		send_to_backend(worker, flow, &segment);
		offset += length;
	} while (offset < binding->length);
}

static int8_t
window_shift(int from, int to)
{
	return (int8_t)(from - to);
}

/* The backend's SYN-ACK: fix the translations, replay, start learning. */
static void
backend_accepted(struct worker *worker, struct flow *flow, struct binding *binding, const uint8_t *tcp)
{
	struct tcp_syn_options backend;
	bool client_scales = binding->client.wscale != TCP_WSCALE_NONE;

	tcp_parse_syn_options(tcp, tcp_header_length(tcp), &backend);
	bool backend_scales = client_scales && backend.wscale != TCP_WSCALE_NONE;
	binding->backend_isn = load_be32(tcp + TCP_SEQ_OFFSET);
	binding->backend_mss = backend.mss ? backend.mss : 536;
	binding->backend_timestamps = binding->client.timestamps && backend.timestamps;
	binding->backend_tsval = backend.tsval;

	flow->sequence_delta = binding->our_isn - binding->backend_isn;
	flow->splice = SPLICE_ACTIVE;
	if (binding->backend_timestamps) {
		flow->splice |= SPLICE_TIMESTAMPS;
		flow->timestamp_delta = clock_ms(worker) - backend.tsval;
	}
	/* client windows carry the client's scale; the backend applies it only
	 * if it accepted scaling */
	flow->client_window_shift = client_scales && !backend_scales ?
				    (int8_t)binding->client.wscale : 0;
	/* backend windows carry the backend's scale; the client applies ours */
	flow->backend_window_shift = window_shift(backend_scales ? backend.wscale : 0,
						  client_scales ? SYNPROXY_WSCALE : 0);
	flow->state = FLOW_TCP_ESTABLISHED;
	flow->flags |= FLOW_BACKEND_SYNACK;
	binding->state = BINDING_SPLICED;
	/* A connection placed because its hello never completed is not learned
	 * from: the server answers a hello that tether never saw whole, and the
	 * binding (22 KB) would be held up to LEARN_TIMEOUT_MS for a client
	 * that may be stalling on purpose.  Released once the replay is acked. */
	const struct runtime_service *service = services_service_by_id(worker->services, flow->service);
	binding->learning = !binding->placed_by_timeout && service &&
			    service->persistence == CONFIG_PERSIST_SSL_SESSION;
	binding->retries = 0;
	binding->deadline = worker->now + REPLAY_RTO_MS * worker->tsc_per_ms;
	binding->learn_deadline = worker->now + LEARN_TIMEOUT_MS * worker->tsc_per_ms;
	tls_server_scan_init(&binding->scan, binding->scratch, sizeof(binding->scratch));
	/* Even with nothing to replay (a cookie connection whose client has not
	 * spoken yet) the binding stays until the backend acknowledges: should
	 * this ACK be lost, only the binding can answer the backend's repeated
	 * SYN-ACK with an ACK it takes.  The client's own answer would not do:
	 * its TSecr echoes the cookie's TSval, which translates to before the
	 * backend's first SYN-ACK, and Linux refuses that in SYN-RECEIVED. */
	send_replay(worker, flow, binding);
}

void
synproxy_binding_packet(struct worker *worker, struct rte_mbuf *m, const struct packet_info *info,
			uint32_t reference)
{
	struct flow *flow = flow_at(&worker->flows, reference);
	struct binding *binding = binding_of(worker, flow);
	const uint8_t *tcp = tcp_header(m, info);

	flow->last_seen = worker->now;
	if ((reference & 1) == FLOW_FORWARD) {
		if (info->tcp_flags & RTE_TCP_RST_FLAG) {
			/* only the client's own RST: at the byte it would send next */
			int32_t distance = seq_diff(load_be32(tcp + TCP_SEQ_OFFSET),
						    binding->client_isn + 1 + binding->length);
			rte_pktmbuf_free(m);
			if (distance <= -FLOW_RST_WINDOW || distance >= FLOW_RST_WINDOW) {
				worker->stats.rst_out_of_window++;
				return;
			}
			worker->synproxy->stats.bindings_aborted++;
			pipeline_end_flow(worker, reference >> 1);
			return;
		}
		client_data(worker, m, info, flow, binding);
		return;
	}
	/* from the backend, while connecting */
	uint8_t flags = info->tcp_flags;
	if ((flags & (RTE_TCP_SYN_FLAG | RTE_TCP_ACK_FLAG)) == (RTE_TCP_SYN_FLAG | RTE_TCP_ACK_FLAG) &&
	    load_be32(tcp + TCP_ACK_OFFSET) == binding->client_isn + 1)
		backend_accepted(worker, flow, binding, tcp);
	/* a RST (refused) waits for the scheduled retry like silence does: a
	 * backend restarting gets its few seconds */
	rte_pktmbuf_free(m);
}

/* Rescale the window field at tcp + 14 by `shift`. */
static inline void
rescale_window(uint8_t *tcp, int8_t shift, uint16_t *check)
{
	uint16_t old_value = nat_load16(tcp + TCP_WINDOW_OFFSET);
	uint32_t window = rte_be_to_cpu_16(old_value);

	window = shift > 0 ? window << shift : window >> -shift;
	uint16_t new_value = rte_cpu_to_be_16((uint16_t)(window > 65535 ? 65535 : window));
	checksum_replace16(check, old_value, new_value);
	nat_store16(tcp + TCP_WINDOW_OFFSET, new_value);
}

void
synproxy_splice_to_backend(struct flow *flow, uint8_t *frame, const struct packet_info *info)
{
	uint8_t *tcp = frame + info->l4_offset;
	unsigned header_length = tcp_header_length(tcp);
	uint16_t check = nat_load16(tcp + TCP_CHECKSUM_OFFSET);
	uint32_t delta = -flow->sequence_delta;

	if (info->tcp_flags & RTE_TCP_ACK_FLAG)
		tcp_adjust32(tcp + TCP_ACK_OFFSET, delta, &check);
	if (header_length > TCP_HEADER_LENGTH) {
		struct tcp_option_offsets offsets;
		tcp_find_options(tcp, header_length, &offsets);
		if (offsets.timestamp && (flow->splice & SPLICE_TIMESTAMPS))
			tcp_adjust32(tcp + offsets.timestamp + 6, -flow->timestamp_delta, &check);
		for (unsigned block = 0; block < offsets.sack_blocks; block++) {
			tcp_adjust32(tcp + offsets.sack + 2 + block * 8, delta, &check);
			tcp_adjust32(tcp + offsets.sack + 6 + block * 8, delta, &check);
		}
	}
	if (flow->client_window_shift)
		rescale_window(tcp, flow->client_window_shift, &check);
	nat_store16(tcp + TCP_CHECKSUM_OFFSET, check);
}

/* --- step 6: learning ------------------------------------------------------ */

static void
remember(struct worker *worker, const struct flow *flow, const struct session_key *key)
{
	const struct runtime_service *service = services_service_by_id(worker->services, flow->service);

	if (!service)
		return;
	persist_insert(&worker->synproxy->sessions, key, flow->backend,
		       worker->now + (uint64_t)service->persist_timeout_s * worker->hz);
	worker_share_session(worker, key, flow->backend, service->persist_timeout_s);
}

static void
learn(struct worker *worker, const struct flow *flow, struct binding *binding)
{
	struct synproxy_stats *stats = &worker->synproxy->stats;
	const struct tls_server_scan *scan = &binding->scan;
	const struct runtime_service *service = services_service_by_id(worker->services, flow->service);
	uint16_t pool = service ? service->pool_id : 0;
	struct session_key key;

	if (scan->reason != TLS_OK || !scan->has_server_hello) {
		stats->learn_incomplete++;
		return;
	}
	const struct tls_server_hello *hello = &scan->server_hello;
	if (hello->negotiated_version >= TLS_VERSION_1_3) {
		/* the session ID is the client's own random echo: never stored */
		if (hello->session_id_length)
			stats->tls13_session_id_ignored++;
		/* psk_key_name is the client's first identity; OpenSSL sends one */
		if (hello->psk_accepted && hello->psk_selected_identity == 0 &&
		    binding->psk_key_name_valid) {
			session_key_bytes(&key, pool, SESSION_KEY_NAME, binding->psk_key_name,
					  TLS_TICKET_KEY_NAME_LENGTH);
			remember(worker, flow, &key);
			stats->learned_key_name++;
		}
		return;
	}
	if (hello->session_id_length) {
		session_key_bytes(&key, pool, SESSION_ID, hello->session_id, hello->session_id_length);
		remember(worker, flow, &key);
		stats->learned_session_id++;
	}
	if (scan->has_ticket) {
		session_key_ticket(&key, pool, scan->ticket, scan->ticket_length);
		remember(worker, flow, &key);
		stats->learned_ticket++;
		if (scan->ticket_length >= TLS_TICKET_KEY_NAME_LENGTH) {
			session_key_bytes(&key, pool, SESSION_KEY_NAME, scan->ticket,
					  TLS_TICKET_KEY_NAME_LENGTH);
			remember(worker, flow, &key);
			stats->learned_key_name++;
		}
	}
}

/* Feed a backend segment's payload (raw backend sequence space) to the scan. */
static void
scan_server_bytes(struct worker *worker, const struct flow *flow, struct binding *binding,
		  const uint8_t *tcp, unsigned length)
{
	int32_t offset = seq_diff(load_be32(tcp + TCP_SEQ_OFFSET), binding->backend_isn + 1);
	const uint8_t *payload = tcp + tcp_header_length(tcp);
	int64_t consumed = (int64_t)binding->scan.consumed;

	if (length == 0 || offset + (int64_t)length <= consumed)
		return;
	if (offset > consumed) {
		/* a gap: the segments after it pass by unseen; stop learning */
		worker->synproxy->stats.learn_gap++;
		binding->learning = false;
		return;
	}
	unsigned skip = (unsigned)(consumed - offset);
	if (tls_server_scan_feed(&binding->scan, payload + skip, length - skip) != TLS_NEED_MORE) {
		learn(worker, flow, binding);
		binding->learning = false;
	}
}

bool
synproxy_splice_to_client(struct worker *worker, struct flow *flow, struct rte_mbuf *m,
			  const struct packet_info *info)
{
	uint8_t *tcp = tcp_header(m, info);
	unsigned header_length = tcp_header_length(tcp);

	if (flow->binding != FLOW_NO_BINDING) {
		struct binding *binding = binding_of(worker, flow);
		if (info->tcp_flags & RTE_TCP_SYN_FLAG) {
			/* our ACK of its SYN-ACK was lost: answer again, tell the client
			 * nothing.  Echo this SYN-ACK's TSval: Linux takes the ACK that
			 * completes its handshake only with a TSecr between the first
			 * and the last SYN-ACK it sent, and this one is the last. */
			struct tcp_option_offsets offsets;
			tcp_find_options(tcp, header_length, &offsets);
			if (offsets.timestamp && binding->backend_timestamps)
				binding->backend_tsval = load_be32(tcp + offsets.timestamp + 2);
			send_replay(worker, flow, binding);
			rte_pktmbuf_free(m);
			return false;
		}
		if ((info->tcp_flags & RTE_TCP_ACK_FLAG) &&
		    seq_diff(load_be32(tcp + TCP_ACK_OFFSET), binding->client_isn + 1 + binding->length) >= 0)
			binding->replay_acked = true;
		if (binding->learning)
			scan_server_bytes(worker, flow, binding, tcp, payload_length(info, tcp));
		/* A RST the flow believed (its state is CLOSE now) ends the backend's
		 * side: nothing more to replay or learn.  Without this, a backend
		 * that reset before acknowledging the replay (a bare RST has no ACK)
		 * kept the binding until the learning deadline, 10 s, while the
		 * replay went on being resent to a closed connection. */
		if ((info->tcp_flags & RTE_TCP_RST_FLAG) && flow->state == FLOW_TCP_CLOSE)
			binding_release(worker, flow);
		else if (binding->replay_acked && !binding->learning)
			binding_release(worker, flow);
	}

	uint16_t check = nat_load16(tcp + TCP_CHECKSUM_OFFSET);
	tcp_adjust32(tcp + TCP_SEQ_OFFSET, flow->sequence_delta, &check);
	if (header_length > TCP_HEADER_LENGTH && (flow->splice & SPLICE_TIMESTAMPS)) {
		struct tcp_option_offsets offsets;
		tcp_find_options(tcp, header_length, &offsets);
		if (offsets.timestamp)
			tcp_adjust32(tcp + offsets.timestamp + 2, flow->timestamp_delta, &check);
	}
	if (flow->backend_window_shift)
		rescale_window(tcp, flow->backend_window_shift, &check);
	nat_store16(tcp + TCP_CHECKSUM_OFFSET, check);
	return true;
}

/* --- timers ---------------------------------------------------------------- */

static void
tick_binding(struct worker *worker, struct binding *binding)
{
	struct flow *flow = &worker->flows.flows[binding->flow];
	struct synproxy_stats *stats = &worker->synproxy->stats;

	switch (binding->state) {
	case BINDING_INSPECTING:
		if (worker->now >= binding->inspect_deadline) {
			stats->inspect_timeouts++;
			binding->placed_by_timeout = true;
			decide(worker, flow, binding, TLS_NEED_MORE);
		}
		break;
	case BINDING_CONNECTING:
		if (worker->now < binding->deadline)
			break;
		if (binding->retries++ == SYN_RETRIES) {
			stats->backend_failed++;
			abort_binding(worker, flow, binding);
			break;
		}
		stats->backend_syn_retries++;
		binding->deadline = worker->now + (SYN_RTO_MS * worker->tsc_per_ms << binding->retries);
		send_backend_syn(worker, flow, binding);
		break;
	case BINDING_SPLICED:
		if (!binding->replay_acked && worker->now >= binding->deadline &&
		    binding->retries < REPLAY_RETRIES) {
			stats->replay_retransmits++;
			binding->retries++;
			binding->deadline = worker->now + (REPLAY_RTO_MS * worker->tsc_per_ms << binding->retries);
			send_replay(worker, flow, binding);
		}
		if (worker->now >= binding->learn_deadline) {
			if (binding->learning)
				stats->learn_incomplete++;
			binding_release(worker, flow);
		}
		break;
	default:
		break;
	}
}

void
synproxy_tick(struct worker *worker)
{
	struct synproxy *proxy = worker->synproxy;

	if (!proxy)
		return;
	/* backwards: a binding released here is replaced by the last one, which
	 * has been visited already */
	for (uint32_t i = proxy->active_count; i-- > 0;)
		tick_binding(worker, &proxy->bindings[proxy->active[i]]);
}

unsigned
synproxy_expire(struct worker *worker, unsigned budget)
{
	return persist_expire(&worker->synproxy->sessions, worker->now, budget);
}
