/*
 * flow.h: the flow table.  One entry per connection, reachable by the 5-tuple
 * of either direction:
 *   forward key  client -> VIP      (what arrives on the public side)
 *   reverse key  backend -> client  (what the backend sends back)
 * Both keys live in one hash table and carry the entry index with the
 * direction in the low bit, so one lookup per packet finds the flow and tells
 * which way it goes, on either port (which also makes one-arm mode work
 * without special cases).
 *
 * The hash table is flow.c's own, not an rte_hash, because the key is already
 * in the entry: a bucket is one cache line of 8 slots, each a 16-bit tag of
 * the key's CRC32 and the reference; a tag match is confirmed against the
 * entry, which the packet path reads next anyway.  So a lookup touches two
 * lines (bucket, entry), both prefetched a burst at a time, and no key store.
 * A full bucket spills into the next one (linear probing by bucket) and counts
 * the spill in an overflow counter, so a lookup stops at the first bucket
 * whose counter is zero and a removal needs no tombstone (F14's scheme).  The
 * table has four slots per key the flows can hold: an insert always finds room.
 *
 * Entries are one cache line, in a preallocated array with a free stack: no
 * allocation after start.  Single writer: the worker lcore that owns the table
 * (today there is one worker; see docs/architecture.md for the multi-worker
 * plan).  Expiry is incremental: flow_expire() looks at a bounded number of
 * entries per call, so a sweep never stalls the worker.
 */
#ifndef TETHER_FLOW_H
#define TETHER_FLOW_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#if defined(__SSE4_2__)
#include <nmmintrin.h>
#endif

#include <rte_branch_prediction.h>
#include <rte_byteorder.h>
#include <rte_common.h>
#include <rte_hash_crc.h>
#include <rte_prefetch.h>

#define FLOW_BUCKET_SLOTS 8

/* One cache line of the key -> reference table (flow.c). */
struct flow_bucket {
	uint16_t tags[FLOW_BUCKET_SLOTS];       /* high bits of the key's hash */
	uint32_t references[FLOW_BUCKET_SLOTS]; /* index << 1 | direction */
	uint16_t used;             /* bit 2 * slot: that slot holds a key */
	uint16_t pad;
	uint32_t overflow;         /* keys that hash here or earlier but live further on */
} __rte_cache_aligned;

/* LVS-like TCP states; UDP flows use FLOW_UDP. */
enum flow_state {
	FLOW_FREE = 0,
	FLOW_TCP_SYN,          /* client SYN forwarded, handshake not complete */
	FLOW_TCP_ESTABLISHED,
	FLOW_TCP_FIN,          /* one side sent FIN */
	FLOW_TCP_CLOSE,        /* both FINs or a RST: linger briefly for last ACKs */
	FLOW_UDP,
	FLOW_TCP_BINDING,      /* ssl-session: client handshake done by the proxy, reading the hello */
	FLOW_TCP_CONNECTING,   /* ssl-session: backend chosen, SYN sent to it */
	FLOW_STATE_COUNT
};

enum flow_direction { FLOW_FORWARD = 0, FLOW_REVERSE = 1 };

#define FLOW_CLIENT_FIN      0x01
#define FLOW_BACKEND_FIN     0x02
#define FLOW_BACKEND_SYNACK  0x04

#define FLOW_NO_PERSIST UINT32_MAX
#define FLOW_NO_BINDING 0xffff

/* flow.splice: what the delayed-binding splice must translate on every packet */
#define SPLICE_ACTIVE      0x01   /* seq/ack offsets apply */
#define SPLICE_TIMESTAMPS  0x02   /* TSval/TSecr offsets apply */

/* The hashed key: a 5-tuple as it appears on the wire (network order). */
struct flow_key {
	uint32_t source;
	uint32_t destination;
	uint16_t source_port;
	uint16_t destination_port;
	uint8_t protocol;
	uint8_t pad[3];
};

/* backend_address, client, vip and their ports are in this order so that the
 * forward key's addresses and ports (client, vip) and the reverse key's
 * (backend, client) are each contiguous: a lookup compares them as one 64-bit
 * and one 32-bit word (flow_key_matches). */
struct flow {
	uint64_t last_seen;        /* TSC of the last packet */
	uint32_t backend_address;  /* network order */
	uint32_t client;
	uint32_t vip;
	uint16_t backend_port;
	uint16_t client_port;
	uint16_t vip_port;
	uint16_t service;          /* runtime service index */
	uint16_t backend;          /* runtime backend index (stats, neighbor) */
	uint8_t protocol;
	uint8_t state;             /* enum flow_state */
	uint8_t flags;             /* FLOW_CLIENT_FIN ... */
	uint8_t pad;
	uint32_t persist_entry;    /* source-ip persistence entry it keeps alive */
	uint16_t neighbor;         /* the backend's next hop (neighbor.h) */
	/* delayed binding (synproxy.c): zero for plain NAT flows */
	uint16_t binding;          /* binding state while inspecting/learning, or FLOW_NO_BINDING */
	uint8_t splice;            /* SPLICE_* */
	int8_t client_window_shift;   /* client -> backend window: << (or >> if negative) */
	int8_t backend_window_shift;  /* backend -> client window */
	uint8_t pad2;
	uint32_t sequence_delta;   /* backend -> client: seq += delta; client -> backend: ack -= delta */
	uint32_t timestamp_delta;  /* backend -> client: TSval += delta; client -> backend: TSecr -= delta */
	uint32_t client_sequence;  /* last TCP sequence number seen each way (network order, */
	uint32_t backend_sequence; /* as on the wire): a RST far from it is not believed */
} __rte_cache_aligned;

struct flow_table {
	struct flow_bucket *buckets;
	uint32_t bucket_mask;      /* bucket count - 1 (a power of two) */
	struct flow *flows;
	uint32_t capacity;
	uint32_t live;
	uint32_t half_open;        /* flows in FLOW_TCP_SYN: kept by insert, remove and the
				    * state machine (flow_track_tcp) */
	uint32_t free_top;
	uint32_t *free_stack;
	uint32_t expire_cursor;
	uint32_t changes;          /* bumped by every insert and remove: a bulk lookup's
				    * results are stale once it moved */
	uint64_t timeout[FLOW_STATE_COUNT];  /* TSC ticks */
};

/* Timeouts in seconds by state, converted to TSC at create time. */
struct flow_timeouts {
	uint32_t tcp_syn, tcp_established, tcp_fin, tcp_close, udp;
};

/* Create a table of `capacity` flows on `socket`.  EAL must be up.  Returns 0
 * or a negative errno.  `name` labels its memory. */
int flow_table_create(struct flow_table *table, const char *name, uint32_t capacity,
		      const struct flow_timeouts *timeouts, int socket);
void flow_table_destroy(struct flow_table *table);

/*
 * Store the key (source, destination, ports, protocol) as two 8-byte words
 * assembled in registers: the hash and the lookup read a key back as 8-byte
 * words, and reading them across the smaller stores of a field-by-field
 * build is a store-forwarding stall on every insert, lookup and removal.
 */
static inline void
flow_key_store(struct flow_key *key, uint32_t source, uint32_t destination, uint16_t source_port,
	       uint16_t destination_port, uint8_t protocol)
{
#if RTE_BYTE_ORDER == RTE_LITTLE_ENDIAN
	uint64_t words[2] = {
		source | (uint64_t)destination << 32,
		source_port | (uint64_t)destination_port << 16 | (uint64_t)protocol << 32,
	};
	memcpy(key, words, sizeof(words));
#else
	*key = (struct flow_key){ source, destination, source_port, destination_port, protocol, {0} };
#endif
}

static inline void
flow_key_forward(const struct flow *flow, struct flow_key *key)
{
	flow_key_store(key, flow->client, flow->vip, flow->client_port, flow->vip_port, flow->protocol);
}

static inline void
flow_key_reverse(const struct flow *flow, struct flow_key *key)
{
	flow_key_store(key, flow->backend_address, flow->client, flow->backend_port,
		       flow->client_port, flow->protocol);
}

/* The hash of a key given as its two 8-byte halves (memory order). */
static inline uint32_t
flow_key_hash_words(uint64_t low, uint64_t high)
{
#if defined(__SSE4_2__) && defined(RTE_ARCH_X86_64)
	/* the instruction itself: rte_hash_crc_8byte checks which one to use on every call */
	return (uint32_t)_mm_crc32_u64(_mm_crc32_u64(0, low), high);
#else
	return rte_hash_crc_8byte(high, rte_hash_crc_8byte(low, 0));
#endif
}

/* The hash of a key: CRC32 of its 16 bytes (what rte_hash_crc computes). */
static inline uint32_t
flow_key_hash(const struct flow_key *key)
{
	uint64_t words[2];

	memcpy(words, key, sizeof(words));
	return flow_key_hash_words(words[0], words[1]);
}

/* Start fetching the bucket a key of `hash` lives in: the packet path does
 * it while it parses, well before flow_lookup_bulk_hashed() reads it. */
static inline void
flow_prefetch_bucket(const struct flow_table *table, uint32_t hash)
{
	rte_prefetch0(&table->buckets[hash & table->bucket_mask]);
}

#define FLOW_LOOKUP_BULK_MAX 64

/*
 * Look up `count` (<= FLOW_LOOKUP_BULK_MAX) keys at once: all buckets are
 * prefetched, then all candidate entries, so the misses of a burst overlap.  For each hit, references[i] holds
 * (index << 1 | direction); misses hold UINT32_MAX.  Returns the hit count.
 * Worker lcore; lock-free.
 */
int flow_lookup_bulk(const struct flow_table *table, const struct flow_key **keys,
		     unsigned count, uint32_t *references);

/* The same, with each key's flow_key_hash() given and its bucket prefetched
 * (flow_prefetch_bucket) by the caller. */
int flow_lookup_bulk_hashed(const struct flow_table *table, const struct flow_key **keys,
			    const uint32_t *hashes, unsigned count, uint32_t *references);

/*
 * Insert `flow` under its forward key only: a delayed-binding flow has no
 * backend yet.  flow_add_reverse() adds the reverse key once it has.
 * Returns the index, -ENOSPC or -EEXIST.  Owner lcore only.
 */
int flow_insert_forward(struct flow_table *table, const struct flow *flow);
int flow_add_reverse(struct flow_table *table, uint32_t index);

/* Single lookup; returns the reference as above or UINT32_MAX. */
uint32_t flow_lookup(const struct flow_table *table, const struct flow_key *key);

/*
 * Insert `flow` (its tuple and backend filled by the caller) under both keys.
 * Returns its index, -ENOSPC when the table is full, -EEXIST when either key
 * is already taken (two VIPs NATing one client port to one backend).
 * Owner lcore only.
 */
int flow_insert(struct flow_table *table, const struct flow *flow);

/* Remove entry `index` and both its keys.  Owner lcore only. */
void flow_remove(struct flow_table *table, uint32_t index);

static inline struct flow *
flow_at(const struct flow_table *table, uint32_t reference)
{
	return &table->flows[reference >> 1];
}

#define FLOW_RST_WINDOW 65536   /* a believable RST lies this close to the last sequence seen */

#define FLOW_TCP_FIN_SYN_RST 0x07   /* RTE_TCP_FIN_FLAG | RTE_TCP_SYN_FLAG | RTE_TCP_RST_FLAG */

/*
 * Advance the TCP state machine for a packet with `tcp_flags` and sequence
 * number `sequence` (network order) going `direction`.  Returns false when
 * it ignored a RST whose sequence number is out of window (a blind attacker's,
 * RFC 5961's concern): the flow keeps its state; the endpoint judges the RST.
 * flow_track_tcp_flags() is the whole machine (and keeps table->half_open
 * when a flow leaves FLOW_TCP_SYN); flow_track_tcp() adds the inline fast path
 * of the established-flow packet path.  `flow` is an entry of `table`.
 */
bool flow_track_tcp_flags(struct flow_table *table, struct flow *flow,
			  enum flow_direction direction, uint8_t tcp_flags, uint32_t sequence);

static inline bool
flow_track_tcp(struct flow_table *table, struct flow *flow, enum flow_direction direction,
	       uint8_t tcp_flags, uint32_t sequence)
{
	/* the common case, inline: an established flow's segment without SYN,
	 * FIN or RST only records its sequence number */
	if (likely(flow->state == FLOW_TCP_ESTABLISHED && !(tcp_flags & FLOW_TCP_FIN_SYN_RST))) {
		if (direction == FLOW_FORWARD)
			flow->client_sequence = sequence;
		else
			flow->backend_sequence = sequence;
		return true;
	}
	return flow_track_tcp_flags(table, flow, direction, tcp_flags, sequence);
}

/*
 * Expire up to `budget` entries' worth of the table, starting where the last
 * call stopped.  `on_expire` (may be NULL) runs before each entry is freed.
 * Returns how many flows were expired.  Owner lcore only.
 */
typedef void (*flow_expire_fn)(struct flow *flow, void *arg);
unsigned flow_expire(struct flow_table *table, uint64_t now, unsigned budget,
		     flow_expire_fn on_expire, void *arg);

const char *flow_state_name(enum flow_state state);

#endif /* TETHER_FLOW_H */
