/*
 * flow.c: flow table storage, TCP state tracking and incremental expiry.
 * Design and threading rules are in flow.h.
 */
#include "flow.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include <rte_byteorder.h>
#include <rte_common.h>
#include <rte_cycles.h>
#include <rte_malloc.h>
#include <rte_prefetch.h>
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

/* The tag of a hash: its high 16 bits, mixed so they do not repeat the bucket
 * index bits of a large table.  Never 0 is not needed: `used` says which
 * slots hold keys. */
static inline uint16_t
hash_tag(uint32_t hash)
{
	return (uint16_t)((hash * 0x9e3779b1u) >> 16);
}

/* Slots of `bucket` that hold a key tagged `tag`: bit 2 * slot set. */
static inline uint32_t
bucket_matches(const struct flow_bucket *bucket, uint16_t tag)
{
#if defined(__SSE2__)
	__m128i tags = _mm_load_si128((const __m128i *)bucket->tags);
	uint32_t equal = (uint32_t)_mm_movemask_epi8(_mm_cmpeq_epi16(tags, _mm_set1_epi16((short)tag)));
	return equal & bucket->used;
#else
	uint32_t matches = 0;
	for (unsigned slot = 0; slot < FLOW_BUCKET_SLOTS; slot++)
		if (bucket->tags[slot] == tag)
			matches |= 1u << (2 * slot);
	return matches & bucket->used;
#endif
}

#define BUCKET_FULL 0x5555u   /* every slot's bit in `used` */

/* True when `reference`'s entry has `key` in that direction.  The forward key
 * (client, vip) starts 4 bytes after the reverse key (backend, client) in the
 * entry, and its ports 2 bytes after (flow.h). */
static inline bool
flow_key_matches(const struct flow_table *table, uint32_t reference, const struct flow_key *key)
{
	const struct flow *flow = &table->flows[reference >> 1];
	unsigned forward = (~reference & 1);
	uint64_t addresses, key_addresses;
	uint32_t ports, key_ports;

	memcpy(&addresses, (const uint8_t *)&flow->backend_address + 4 * forward, 8);
	memcpy(&ports, (const uint8_t *)&flow->backend_port + 2 * forward, 4);
	memcpy(&key_addresses, key, 8);
	memcpy(&key_ports, &key->source_port, 4);
	return ((addresses ^ key_addresses) | (ports ^ key_ports) |
		(uint32_t)(flow->protocol ^ key->protocol)) == 0;
}

/* The whole probe: home bucket, then on while the buckets passed overflowed. */
static uint32_t
lookup_hashed(const struct flow_table *table, const struct flow_key *key, uint32_t hash)
{
	uint16_t tag = hash_tag(hash);

	for (uint32_t b = hash & table->bucket_mask;; b = (b + 1) & table->bucket_mask) {
		const struct flow_bucket *bucket = &table->buckets[b];
		for (uint32_t matches = bucket_matches(bucket, tag); matches; matches &= matches - 1) {
			uint32_t reference = bucket->references[__builtin_ctz(matches) >> 1];
			if (flow_key_matches(table, reference, key))
				return reference;
		}
		if (bucket->overflow == 0)
			return UINT32_MAX;
	}
}

/* Store `reference` under `hash`: the first bucket from its home with a free
 * slot; every full bucket passed counts one more overflow.  The caller made
 * sure the key is not there; the table's size guarantees a free slot. */
static void
slot_add(struct flow_table *table, uint32_t hash, uint32_t reference)
{
	uint32_t b = hash & table->bucket_mask;

	while (table->buckets[b].used == BUCKET_FULL) {
		table->buckets[b].overflow++;
		b = (b + 1) & table->bucket_mask;
	}
	struct flow_bucket *bucket = &table->buckets[b];
	unsigned slot = (unsigned)__builtin_ctz(~(uint32_t)bucket->used & BUCKET_FULL) >> 1;
	bucket->tags[slot] = hash_tag(hash);
	bucket->references[slot] = reference;
	bucket->used |= (uint16_t)(1u << (2 * slot));
}

/* Remove the slot holding `reference` under `hash`, undoing slot_add's
 * overflow counts.  A reference that is not there changes nothing. */
static void
slot_remove(struct flow_table *table, uint32_t hash, uint32_t reference)
{
	uint16_t tag = hash_tag(hash);
	uint32_t home = hash & table->bucket_mask;

	for (uint32_t b = home;; b = (b + 1) & table->bucket_mask) {
		struct flow_bucket *bucket = &table->buckets[b];
		for (uint32_t matches = bucket_matches(bucket, tag); matches; matches &= matches - 1) {
			unsigned slot = (unsigned)__builtin_ctz(matches) >> 1;
			if (bucket->references[slot] != reference)
				continue;
			bucket->used &= (uint16_t)~(1u << (2 * slot));
			for (uint32_t passed = home; passed != b; passed = (passed + 1) & table->bucket_mask)
				table->buckets[passed].overflow--;
			return;
		}
		if (bucket->overflow == 0)
			return;
	}
}

int
flow_table_create(struct flow_table *table, const char *name, uint32_t capacity,
		  const struct flow_timeouts *timeouts, int socket)
{
	uint64_t hz = rte_get_tsc_hz();
	/* two keys per flow, at most half the slots used: short probes, and an
	 * insert always finds a free slot */
	uint32_t buckets = rte_align32pow2(capacity * 4 / FLOW_BUCKET_SLOTS);
	char label[64];

	memset(table, 0, sizeof(*table));
	if (buckets == 0)
		buckets = 1;
	snprintf(label, sizeof(label), "%s_buckets", name);
	table->buckets = rte_zmalloc_socket(label, sizeof(struct flow_bucket) * buckets,
					    RTE_CACHE_LINE_SIZE, socket);
	table->flows = rte_zmalloc_socket(name, sizeof(struct flow) * capacity,
					  RTE_CACHE_LINE_SIZE, socket);
	table->free_stack = rte_malloc_socket("flow_free", sizeof(uint32_t) * capacity, 0, socket);
	if (!table->buckets || !table->flows || !table->free_stack) {
		flow_table_destroy(table);
		return -ENOMEM;
	}
	table->bucket_mask = buckets - 1;
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
	rte_free(table->buckets);
	rte_free(table->flows);
	rte_free(table->free_stack);
	memset(table, 0, sizeof(*table));
}

#define REFERENCE_PROBE (UINT32_MAX - 1)   /* bulk: the home bucket did not settle it */

int
flow_lookup_bulk_hashed(const struct flow_table *table, const struct flow_key **keys,
			const uint32_t *hashes, unsigned count, uint32_t *references)
{
	int found = 0;

	/* 1: the one candidate of each home bucket (prefetched by the caller),
	 * its entry on its way; more than one tag match, or none in a bucket
	 * that overflowed, takes the whole probe in step 2 */
	for (unsigned i = 0; i < count; i++) {
		const struct flow_bucket *bucket = &table->buckets[hashes[i] & table->bucket_mask];
		uint32_t matches = bucket_matches(bucket, hash_tag(hashes[i]));
		if (likely(matches && (matches & (matches - 1)) == 0)) {
			references[i] = bucket->references[__builtin_ctz(matches) >> 1];
			rte_prefetch0(&table->flows[references[i] >> 1]);
		} else {
			references[i] = matches || bucket->overflow ? REFERENCE_PROBE : UINT32_MAX;
		}
	}
	/* 2: confirm each candidate against its entry */
	for (unsigned i = 0; i < count; i++) {
		uint32_t reference = references[i];
		if (reference == UINT32_MAX)
			continue;
		if (unlikely(reference == REFERENCE_PROBE || !flow_key_matches(table, reference, keys[i])))
			reference = lookup_hashed(table, keys[i], hashes[i]);
		references[i] = reference;
		found += reference != UINT32_MAX;
	}
	return found;
}

int
flow_lookup_bulk(const struct flow_table *table, const struct flow_key **keys,
		 unsigned count, uint32_t *references)
{
	uint32_t hashes[FLOW_LOOKUP_BULK_MAX];

	for (unsigned i = 0; i < count; i++) {
		hashes[i] = flow_key_hash(keys[i]);
		flow_prefetch_bucket(table, hashes[i]);
	}
	return flow_lookup_bulk_hashed(table, keys, hashes, count, references);
}

uint32_t
flow_lookup(const struct flow_table *table, const struct flow_key *key)
{
	return lookup_hashed(table, key, flow_key_hash(key));
}

/* Take the next free entry for `flow`; the caller adds its keys. */
static uint32_t
entry_take(struct flow_table *table, const struct flow *flow)
{
	uint32_t index = table->free_stack[--table->free_top];

	table->flows[index] = *flow;
	table->live++;
	table->half_open += flow->state == FLOW_TCP_SYN;
	return index;
}

int
flow_insert(struct flow_table *table, const struct flow *flow)
{
	struct flow_key forward, reverse;

	if (table->free_top == 0)
		return -ENOSPC;
	flow_key_forward(flow, &forward);
	flow_key_reverse(flow, &reverse);
	uint32_t forward_hash = flow_key_hash(&forward), reverse_hash = flow_key_hash(&reverse);
	/* A key already present is a conflict, never an overwrite of a live flow. */
	if (lookup_hashed(table, &forward, forward_hash) != UINT32_MAX ||
	    lookup_hashed(table, &reverse, reverse_hash) != UINT32_MAX)
		return -EEXIST;
	uint32_t index = entry_take(table, flow);
	slot_add(table, forward_hash, index << 1 | FLOW_FORWARD);
	slot_add(table, reverse_hash, index << 1 | FLOW_REVERSE);
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
	uint32_t hash = flow_key_hash(&forward);
	if (lookup_hashed(table, &forward, hash) != UINT32_MAX)
		return -EEXIST;
	uint32_t index = entry_take(table, flow);
	slot_add(table, hash, index << 1 | FLOW_FORWARD);
	table->changes++;
	return (int)index;
}

int
flow_add_reverse(struct flow_table *table, uint32_t index)
{
	struct flow_key reverse;

	flow_key_reverse(&table->flows[index], &reverse);
	uint32_t hash = flow_key_hash(&reverse);
	if (lookup_hashed(table, &reverse, hash) != UINT32_MAX)
		return -EEXIST;
	slot_add(table, hash, index << 1 | FLOW_REVERSE);
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
	slot_remove(table, flow_key_hash(&key), index << 1 | FLOW_FORWARD);
	if (flow->backend_address) {   /* a flow still binding has no reverse key */
		flow_key_reverse(flow, &key);
		slot_remove(table, flow_key_hash(&key), index << 1 | FLOW_REVERSE);
	}
	table->half_open -= flow->state == FLOW_TCP_SYN;
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

/* The state machine itself; flow_track_tcp_flags() counts what leaves SYN. */
static bool
track_tcp(struct flow *flow, enum flow_direction direction, uint8_t tcp_flags, uint32_t sequence)
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

bool
flow_track_tcp_flags(struct flow_table *table, struct flow *flow,
		     enum flow_direction direction, uint8_t tcp_flags, uint32_t sequence)
{
	bool half_open = flow->state == FLOW_TCP_SYN;
	bool believed = track_tcp(flow, direction, tcp_flags, sequence);

	if (half_open && flow->state != FLOW_TCP_SYN)
		table->half_open--;
	return believed;
}

/* True when `flow` is live and idle past its state's timeout.  last_seen may
 * be a little ahead of `now` (stamped later): not expired. */
static inline bool
idle_too_long(const struct flow_table *table, const struct flow *flow, uint64_t now)
{
	return flow->state != FLOW_FREE && now > flow->last_seen &&
	       now - flow->last_seen > table->timeout[flow->state];
}

#define EXPIRE_PREFETCH_AHEAD 4

/* If entry `index` (wrapping once past the end) will expire, start fetching
 * the buckets of its two keys: the sweep removes it a few entries later, and
 * a removal probes both. */
static inline void
prefetch_expiring(const struct flow_table *table, uint32_t index, uint64_t now)
{
	const struct flow *flow = &table->flows[index < table->capacity ? index : index - table->capacity];
	struct flow_key key;

	if (!idle_too_long(table, flow, now))
		return;
	flow_key_forward(flow, &key);
	flow_prefetch_bucket(table, flow_key_hash(&key));
	flow_key_reverse(flow, &key);
	flow_prefetch_bucket(table, flow_key_hash(&key));
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
		if (table->capacity > EXPIRE_PREFETCH_AHEAD)
			prefetch_expiring(table, cursor + EXPIRE_PREFETCH_AHEAD, now);
		if (idle_too_long(table, flow, now)) {
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
