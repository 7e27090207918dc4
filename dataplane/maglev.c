/*
 * maglev.c: building Maglev lookup tables (Eisenbud et al., NSDI 2016).
 *
 * Every backend walks its own permutation of the slots: it prefers slot
 * offset, then offset + skip, offset + 2 skip, ... (mod size).  Because size
 * is prime and 1 <= skip < size, the walk visits every slot exactly once per
 * cycle.  offset and skip come from two seeded hashes of the backend's name,
 * computed over its bytes, so every machine, whatever its endianness or word
 * size, and every node with the same config, derives the same permutations.
 *
 * A population hands free slots to backends in turns: each takes the next
 * free slot of its walk.  Weights set the pace: in round r (r = 0, 1, ...)
 * backend i takes floor((r+1) w_i / w_max) - floor(r w_i / w_max) turns, so a
 * backend of the largest weight takes one per round and one of half that
 * weight one every other round; within a round turns go in backend order.
 * Instead of stepping through rounds (which costs backend_count per round even
 * when few backends are due, and pass 2 below can need tens of thousands of
 * rounds), a binary heap orders the turns by (round of the turn, backend
 * index): backend i's k-th turn falls in round ceil(k w_max / w_i) - 1.  The
 * order is exactly that of the rounds, at O(log backends) per turn.
 *
 * Pass 1 populates the whole table over every configured backend, active or
 * not, with its configured weight (0 counts as 1 here: weight 0 means
 * "drain", and draining must not reshape the table).  Its result depends only
 * on the configuration, never on health.
 *
 * Pass 2 takes back the slots of backends that may take no new flows and
 * hands them out again among those that may, by a second population that
 * starts each walk afresh and fills only the vacated slots.  No slot of an
 * active backend changes, so when a backend goes down only its own clients
 * move.  For the final shares to follow the active weights, the second
 * population is weighted not by w_i but by each active backend's deficit: its
 * fair number of slots, round(size w_i / sum of active weights), minus what it
 * already owns from pass 1; a backend at or above its fair number gets none,
 * and no backend takes more than its deficit.  Rounding can leave a few slots
 * once every deficit is met; a last population by plain weights fills them.
 *
 * Cost: walks skip taken slots, so finding the last free slots is the coupon
 * collector's problem, size * ln(size) probes spread over all walks; the
 * heap adds O(log backends) per slot.  About 6 ms for 1000 backends over
 * 65537 slots, 10 ms with half of them down (tests/unit/test_maglev.c prints
 * it).  Disruption is Maglev's: adding one backend to N moves about 1/(N+1)
 * of the slots while size >= ~100 N, more as slots per backend get fewer.
 */
#include "maglev.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>

#define MAGLEV_BACKENDS_MAX 65535u  /* indices 0..65534; 0xffff means none */
#define MAGLEV_WEIGHT_MAX   1000u
#define MAGLEV_NO_QUOTA     UINT32_MAX

/* Seeds of the two name hashes: any two distinct constants will do, but they
 * are part of the table's identity: changing one moves every client. */
#define MAGLEV_SEED_OFFSET  UINT64_C(0x6d61676c65762d6f)  /* "maglev-o" */
#define MAGLEV_SEED_SKIP    UINT64_C(0x6d61676c65762d73)  /* "maglev-s" */

/* One backend's walk through its permutation during a population. */
struct maglev_walk {
	uint32_t offset;    /* first preferred slot */
	uint32_t skip;      /* step between preferred slots, 1..size-1 */
	uint32_t next;      /* next slot to try */
	uint32_t weight;    /* pace in this population; 0: takes no part */
	uint32_t quota;     /* turns left, or MAGLEV_NO_QUOTA */
	uint32_t turns;     /* turns taken in this population */
};

/* A backend's next turn in the population heap. */
struct maglev_turn {
	uint64_t round;
	uint32_t backend;
};

bool
maglev_is_prime(uint32_t n)
{
	uint32_t d;

	if (n < 4)
		return n >= 2;
	if (n % 2 == 0 || n % 3 == 0)
		return false;
	/* Divisors 6k - 1 and 6k + 1 up to sqrt(n); d <= 65536 cannot overflow. */
	for (d = 5; (uint64_t)d * d <= n; d += 6) {
		if (n % d == 0 || n % (d + 2) == 0)
			return false;
	}
	return true;
}

/* 64-bit FNV-1a over a byte; the state is pure arithmetic on byte values. */
static uint64_t
maglev_fnv1a_byte(uint64_t hash, uint8_t byte)
{
	return (hash ^ byte) * UINT64_C(0x100000001b3);
}

/*
 * Seeded 64-bit hash of a NUL-terminated name: FNV-1a over the seed's eight
 * bytes (least significant first, by shifts, so endianness does not matter)
 * then the name's bytes, then MurmurHash3's fmix64 so that every output bit
 * depends on every input bit (FNV alone leaves the low bits weak, and the
 * low bits are the ones `% size` keeps).
 */
static uint64_t
maglev_hash_name(const char *name, uint64_t seed)
{
	const unsigned char *byte = (const unsigned char *)name;
	uint64_t hash = UINT64_C(0xcbf29ce484222325);
	unsigned i;

	for (i = 0; i < 8; i++)
		hash = maglev_fnv1a_byte(hash, (uint8_t)(seed >> (8 * i)));
	for (; *byte != '\0'; byte++)
		hash = maglev_fnv1a_byte(hash, *byte);

	hash ^= hash >> 33;
	hash *= UINT64_C(0xff51afd7ed558ccd);
	hash ^= hash >> 33;
	hash *= UINT64_C(0xc4ceb9fe1a85ec53);
	hash ^= hash >> 33;
	return hash;
}

/* The round of walk's next turn: its (turns+1)-th falls in round
 * ceil((turns+1) * weight_max / weight) - 1.  Both factors are below 2^32. */
static uint64_t
maglev_turn_round(const struct maglev_walk *walk, uint32_t weight_max)
{
	uint64_t due = ((uint64_t)walk->turns + 1) * weight_max;

	return (due - 1) / walk->weight;
}

static bool
maglev_turn_before(const struct maglev_turn *a, const struct maglev_turn *b)
{
	if (a->round != b->round)
		return a->round < b->round;
	return a->backend < b->backend;
}

/* Restore heap order below position `at` after heap[at] grew. */
static void
maglev_heap_sift_down(struct maglev_turn *heap, uint32_t length, uint32_t at)
{
	for (;;) {
		uint32_t first = at, child = 2 * at + 1;
		struct maglev_turn swap;

		if (child < length && maglev_turn_before(&heap[child], &heap[first]))
			first = child;
		if (child + 1 < length &&
		    maglev_turn_before(&heap[child + 1], &heap[first]))
			first = child + 1;
		if (first == at)
			return;
		swap = heap[at];
		heap[at] = heap[first];
		heap[first] = swap;
		at = first;
	}
}

/* Next free slot on walk's permutation, which it then takes past.  The
 * caller guarantees a free slot exists: a walk only ever passes taken slots,
 * and taken slots stay taken, so one cycle from its start reaches them all. */
static uint32_t
maglev_walk_next_free(struct maglev_walk *walk, const uint16_t *slots,
		      uint32_t size)
{
	uint32_t slot;

	do {
		slot = walk->next;
		/* next + skip mod size, without overflowing near 2^32. */
		if (walk->next >= size - walk->skip)
			walk->next -= size - walk->skip;
		else
			walk->next += walk->skip;
	} while (slots[slot] != MAGLEV_NO_BACKEND);
	return slot;
}

/*
 * One population: hands up to `vacant` free slots (MAGLEV_NO_BACKEND) to the
 * walks of non-zero weight, in turns paced by weight, a walk dropping out
 * once its quota is spent.  `owned` counts slots per backend and is updated.
 * `heap` has room for `count` turns.  Returns how many slots remain free:
 * 0 unless every walk ran out of quota first.
 */
static uint32_t
maglev_populate(uint16_t *slots, uint32_t size, struct maglev_walk *walks,
		uint32_t *owned, unsigned count, struct maglev_turn *heap,
		uint32_t vacant)
{
	uint32_t weight_max = 0, length = 0, i;

	for (i = 0; i < count; i++) {
		if (walks[i].weight > 0 && walks[i].quota > 0 &&
		    walks[i].weight > weight_max)
			weight_max = walks[i].weight;
	}
	for (i = 0; i < count; i++) {
		if (walks[i].weight == 0 || walks[i].quota == 0)
			continue;
		walks[i].turns = 0;
		heap[length].round = maglev_turn_round(&walks[i], weight_max);
		heap[length].backend = i;
		length++;
	}
	/* Heapify bottom-up. */
	for (i = length / 2; i-- > 0;)
		maglev_heap_sift_down(heap, length, i);

	while (vacant > 0 && length > 0) {
		uint32_t backend = heap[0].backend;
		struct maglev_walk *walk = &walks[backend];
		uint32_t slot = maglev_walk_next_free(walk, slots, size);

		slots[slot] = (uint16_t)backend;
		owned[backend]++;
		vacant--;
		walk->turns++;
		if (walk->quota != MAGLEV_NO_QUOTA)
			walk->quota--;
		if (walk->quota == 0)
			heap[0] = heap[--length];
		else
			heap[0].round = maglev_turn_round(walk, weight_max);
		maglev_heap_sift_down(heap, length, 0);
	}
	return vacant;
}

static bool
maglev_backend_is_active(const struct maglev_backend *backend)
{
	return backend->active && backend->weight > 0;
}

/*
 * Pass 2: vacate the slots of inactive backends and hand them to the active
 * ones by deficit, then by weight for what rounding leaves.  Slots of active
 * backends are never written.
 */
static void
maglev_refill(uint16_t *slots, uint32_t size,
	      const struct maglev_backend *backends, unsigned count,
	      struct maglev_walk *walks, uint32_t *owned,
	      struct maglev_turn *heap)
{
	uint64_t weight_sum = 0;
	uint32_t vacant = 0, slot;
	unsigned i;

	for (i = 0; i < count; i++) {
		if (maglev_backend_is_active(&backends[i]))
			weight_sum += backends[i].weight;
	}
	for (slot = 0; slot < size; slot++) {
		uint16_t owner = slots[slot];

		if (!maglev_backend_is_active(&backends[owner])) {
			owned[owner]--;
			slots[slot] = MAGLEV_NO_BACKEND;
			vacant++;
		}
	}
	if (vacant == 0 || weight_sum == 0)
		return;  /* nothing to refill, or nobody to take it */

	for (i = 0; i < count; i++) {
		/* size * weight < 2^42: no overflow. */
		uint64_t fair = (2 * (uint64_t)size * backends[i].weight +
				 weight_sum) / (2 * weight_sum);

		walks[i].next = walks[i].offset;
		walks[i].weight = 0;
		walks[i].quota = 0;
		if (maglev_backend_is_active(&backends[i]) && fair > owned[i]) {
			walks[i].weight = (uint32_t)(fair - owned[i]);
			walks[i].quota = walks[i].weight;
		}
	}
	vacant = maglev_populate(slots, size, walks, owned, count, heap, vacant);
	if (vacant == 0)
		return;

	for (i = 0; i < count; i++) {
		walks[i].weight = maglev_backend_is_active(&backends[i]) ?
				  backends[i].weight : 0;
		walks[i].quota = MAGLEV_NO_QUOTA;
	}
	maglev_populate(slots, size, walks, owned, count, heap, vacant);
}

static int
maglev_validate(uint32_t size, const struct maglev_backend *backends,
		unsigned count)
{
	unsigned i;

	if (!maglev_is_prime(size) || size < count || count > MAGLEV_BACKENDS_MAX)
		return -EINVAL;
	if (count > 0 && backends == NULL)
		return -EINVAL;
	for (i = 0; i < count; i++) {
		if (backends[i].name == NULL ||
		    backends[i].weight > MAGLEV_WEIGHT_MAX)
			return -EINVAL;
	}
	return 0;
}

/*
 * On failure *table is left as it was.  On success its previous contents are
 * overwritten, not freed: build into a fresh table and swap it in.
 */
int
maglev_build(struct maglev_table *table, uint32_t size,
	     const struct maglev_backend *backends, unsigned backend_count)
{
	struct maglev_walk *walks = NULL;
	struct maglev_turn *heap = NULL;
	uint32_t *owned = NULL;
	uint16_t *slots;
	uint32_t slot;
	unsigned i;
	int rc;

	if (table == NULL)
		return -EINVAL;
	rc = maglev_validate(size, backends, backend_count);
	if (rc != 0)
		return rc;

	slots = malloc((size_t)size * sizeof(*slots));
	if (slots == NULL)
		return -ENOMEM;
	for (slot = 0; slot < size; slot++)
		slots[slot] = MAGLEV_NO_BACKEND;

	if (backend_count > 0) {
		walks = calloc(backend_count, sizeof(*walks));
		heap = calloc(backend_count, sizeof(*heap));
		owned = calloc(backend_count, sizeof(*owned));
		if (walks == NULL || heap == NULL || owned == NULL) {
			free(walks);
			free(heap);
			free(owned);
			free(slots);
			return -ENOMEM;
		}

		for (i = 0; i < backend_count; i++) {
			const char *name = backends[i].name;
			uint16_t weight = backends[i].weight;

			walks[i].offset = (uint32_t)(maglev_hash_name(name,
					  MAGLEV_SEED_OFFSET) % size);
			walks[i].skip = (uint32_t)(maglev_hash_name(name,
					MAGLEV_SEED_SKIP) % (size - 1) + 1);
			walks[i].next = walks[i].offset;
			walks[i].weight = weight > 0 ? weight : 1;
			walks[i].quota = MAGLEV_NO_QUOTA;
		}
		maglev_populate(slots, size, walks, owned, backend_count, heap,
				size);
		maglev_refill(slots, size, backends, backend_count, walks,
			      owned, heap);

		free(walks);
		free(heap);
		free(owned);
	}

	table->size = size;
	table->slots = slots;
	return 0;
}

void
maglev_free(struct maglev_table *table)
{
	if (table == NULL)
		return;
	free(table->slots);
	table->slots = NULL;
	table->size = 0;
}
