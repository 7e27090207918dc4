/*
 * flow.c: flow table storage, TCP state tracking and incremental expiry.
 * Design and threading rules are in flow.h.
 */
#include "flow.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <rte_byteorder.h>
#include <rte_cycles.h>
#include <rte_hash.h>
#include <rte_hash_crc.h>
#include <rte_malloc.h>
#include <rte_tcp.h>

static const char *const state_names[FLOW_STATE_COUNT] = {
	[FLOW_FREE] = "free",
	[FLOW_TCP_SYN] = "syn",
	[FLOW_TCP_ESTABLISHED] = "established",
	[FLOW_TCP_FIN] = "fin",
	[FLOW_TCP_CLOSE] = "close",
	[FLOW_UDP] = "udp",
	[FLOW_TCP_BINDING] = "binding",
	[FLOW_TCP_CONNECTING] = "connecting",
};

const char *
flow_state_name(enum flow_state state)
{
	return (unsigned)state < FLOW_STATE_COUNT ? state_names[state] : "unknown";
}

int
flow_table_create(struct flow_table *table, const char *name, uint32_t capacity,
		  const struct flow_timeouts *timeouts, int socket)
{
	uint64_t hz = rte_get_tsc_hz();
	struct rte_hash_parameters parameters = {
		.name = name,
		/* two keys per flow; the extendable table guarantees every key fits */
		.entries = capacity * 2,
		.key_len = sizeof(struct flow_key),
		.hash_func = rte_hash_crc,
		.socket_id = socket,
		.extra_flag = RTE_HASH_EXTRA_FLAGS_EXT_TABLE,
	};

	memset(table, 0, sizeof(*table));
	table->hash = rte_hash_create(&parameters);
	table->flows = rte_zmalloc_socket("flows", sizeof(struct flow) * capacity,
					  RTE_CACHE_LINE_SIZE, socket);
	table->free_stack = rte_malloc_socket("flow_free", sizeof(uint32_t) * capacity, 0, socket);
	if (!table->hash || !table->flows || !table->free_stack) {
		flow_table_destroy(table);
		return -ENOMEM;
	}
	table->capacity = capacity;
	/* Hand out low indexes first: a small table stays in few cache lines. */
	for (uint32_t i = 0; i < capacity; i++)
		table->free_stack[i] = capacity - 1 - i;
	table->free_top = capacity;
	table->timeout[FLOW_TCP_SYN] = timeouts->tcp_syn * hz;
	table->timeout[FLOW_TCP_ESTABLISHED] = timeouts->tcp_established * hz;
	table->timeout[FLOW_TCP_FIN] = timeouts->tcp_fin * hz;
	table->timeout[FLOW_TCP_CLOSE] = timeouts->tcp_close * hz;
	table->timeout[FLOW_UDP] = timeouts->udp * hz;
	/* the binding timers (synproxy.c) act first; these only reclaim leftovers */
	table->timeout[FLOW_TCP_BINDING] = timeouts->tcp_syn * hz;
	table->timeout[FLOW_TCP_CONNECTING] = timeouts->tcp_syn * hz;
	return 0;
}

void
flow_table_destroy(struct flow_table *table)
{
	rte_hash_free(table->hash);
	rte_free(table->flows);
	rte_free(table->free_stack);
	memset(table, 0, sizeof(*table));
}

int
flow_lookup_bulk(const struct flow_table *table, const struct flow_key **keys,
		 unsigned count, uint32_t *references)
{
	void *data[RTE_HASH_LOOKUP_BULK_MAX];
	uint64_t hits = 0;

	int found = rte_hash_lookup_bulk_data(table->hash, (const void **)keys, count,
					      &hits, data);
	for (unsigned i = 0; i < count; i++)
		references[i] = (hits >> i) & 1 ? (uint32_t)(uintptr_t)data[i] : UINT32_MAX;
	return found < 0 ? 0 : found;
}

uint32_t
flow_lookup(const struct flow_table *table, const struct flow_key *key)
{
	void *data;

	if (rte_hash_lookup_data(table->hash, key, &data) < 0)
		return UINT32_MAX;
	return (uint32_t)(uintptr_t)data;
}

int
flow_insert(struct flow_table *table, const struct flow *flow)
{
	struct flow_key forward, reverse;
	int rc;

	if (table->free_top == 0)
		return -ENOSPC;
	flow_key_forward(flow, &forward);
	flow_key_reverse(flow, &reverse);
	/* A key already present is a conflict, never an overwrite of a live flow. */
	if (rte_hash_lookup(table->hash, &forward) >= 0 ||
	    rte_hash_lookup(table->hash, &reverse) >= 0)
		return -EEXIST;

	uint32_t index = table->free_stack[table->free_top - 1];
	rc = rte_hash_add_key_data(table->hash, &forward,
				   (void *)(uintptr_t)(index << 1 | FLOW_FORWARD));
	if (rc < 0)
		return -ENOSPC;
	rc = rte_hash_add_key_data(table->hash, &reverse,
				   (void *)(uintptr_t)(index << 1 | FLOW_REVERSE));
	if (rc < 0) {
		rte_hash_del_key(table->hash, &forward);
		return -ENOSPC;
	}
	table->free_top--;
	table->flows[index] = *flow;
	table->live++;
	table->changes++;
	return (int)index;
}

int
flow_insert_forward(struct flow_table *table, const struct flow *flow)
{
	struct flow_key forward;

	if (table->free_top == 0)
		return -ENOSPC;
	flow_key_forward(flow, &forward);
	if (rte_hash_lookup(table->hash, &forward) >= 0)
		return -EEXIST;
	uint32_t index = table->free_stack[table->free_top - 1];
	if (rte_hash_add_key_data(table->hash, &forward,
				  (void *)(uintptr_t)(index << 1 | FLOW_FORWARD)) < 0)
		return -ENOSPC;
	table->free_top--;
	table->flows[index] = *flow;
	table->live++;
	table->changes++;
	return (int)index;
}

int
flow_add_reverse(struct flow_table *table, uint32_t index)
{
	struct flow_key reverse;

	flow_key_reverse(&table->flows[index], &reverse);
	if (rte_hash_lookup(table->hash, &reverse) >= 0)
		return -EEXIST;
	if (rte_hash_add_key_data(table->hash, &reverse,
				  (void *)(uintptr_t)(index << 1 | FLOW_REVERSE)) < 0)
		return -ENOSPC;
	table->changes++;
	return 0;
}

void
flow_remove(struct flow_table *table, uint32_t index)
{
	struct flow *flow = &table->flows[index];
	struct flow_key key;

	if (flow->state == FLOW_FREE)
		return;   /* never free an entry twice: the free stack would overflow */
	flow_key_forward(flow, &key);
	rte_hash_del_key(table->hash, &key);
	if (flow->backend_address) {   /* a flow still binding has no reverse key */
		flow_key_reverse(flow, &key);
		rte_hash_del_key(table->hash, &key);
	}
	flow->state = FLOW_FREE;
	table->free_stack[table->free_top++] = index;
	table->live--;
	table->changes++;
}

/* True when `sequence` is within FLOW_RST_WINDOW of `last` (or nothing was seen). */
static bool
sequence_plausible(uint32_t last, uint32_t sequence)
{
	int32_t distance = (int32_t)(rte_be_to_cpu_32(sequence) - rte_be_to_cpu_32(last));

	return last == 0 || (distance > -FLOW_RST_WINDOW && distance < FLOW_RST_WINDOW);
}

bool
flow_track_tcp(struct flow *flow, enum flow_direction direction, uint8_t tcp_flags,
	       uint32_t sequence)
{
	uint32_t *last = direction == FLOW_FORWARD ? &flow->client_sequence : &flow->backend_sequence;

	if (tcp_flags & RTE_TCP_RST_FLAG) {
		if (!sequence_plausible(*last, sequence))
			return false;
		flow->state = FLOW_TCP_CLOSE;
		return true;
	}
	*last = sequence;
	/* (a client SYN on a closing flow is a new connection: the pipeline ends
	 * the flow and creates another, so it never reaches here) */
	if (direction == FLOW_FORWARD && (tcp_flags & RTE_TCP_SYN_FLAG) &&
	    !(tcp_flags & RTE_TCP_ACK_FLAG))
		return true;
	if (direction == FLOW_REVERSE && (tcp_flags & RTE_TCP_SYN_FLAG))
		flow->flags |= FLOW_BACKEND_SYNACK;
	if (tcp_flags & RTE_TCP_FIN_FLAG) {
		flow->flags |= direction == FLOW_FORWARD ? FLOW_CLIENT_FIN : FLOW_BACKEND_FIN;
		flow->state = (flow->flags & (FLOW_CLIENT_FIN | FLOW_BACKEND_FIN)) ==
			      (FLOW_CLIENT_FIN | FLOW_BACKEND_FIN) ? FLOW_TCP_CLOSE : FLOW_TCP_FIN;
		return true;
	}
	/* The client's ACK of the backend's SYN-ACK completes the handshake. */
	if (flow->state == FLOW_TCP_SYN && direction == FLOW_FORWARD &&
	    (flow->flags & FLOW_BACKEND_SYNACK) && (tcp_flags & RTE_TCP_ACK_FLAG))
		flow->state = FLOW_TCP_ESTABLISHED;
	return true;
}

unsigned
flow_expire(struct flow_table *table, uint64_t now, unsigned budget,
	    flow_expire_fn on_expire, void *arg)
{
	unsigned expired = 0;
	uint32_t cursor = table->expire_cursor;

	if (table->capacity == 0)
		return 0;
	while (budget--) {
		struct flow *flow = &table->flows[cursor];
		/* last_seen may be a little ahead of `now` (stamped later): not expired */
		if (flow->state != FLOW_FREE && now > flow->last_seen &&
		    now - flow->last_seen > table->timeout[flow->state]) {
			if (on_expire)
				on_expire(flow, arg);
			flow_remove(table, cursor);
			expired++;
		}
		if (++cursor == table->capacity)
			cursor = 0;
	}
	table->expire_cursor = cursor;
	return expired;
}
