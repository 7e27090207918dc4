/*
 * maglev.h: Maglev consistent-hashing lookup tables (Eisenbud et al., NSDI 2016),
 * weighted, with a stability guarantee for backends that go away.
 *
 * A table maps a flow hash to a backend index.  It is built in two passes:
 *   1. weighted Maglev over every *configured* backend of the pool (the pool as
 *      the file describes it), so every node with the same config builds the
 *      same table;
 *   2. the slots of backends that may take no new flows (down, disabled,
 *      draining, weight 0) are refilled, again by Maglev preference order and
 *      weight, among the backends that may.
 * Pass 2 never moves a slot owned by an active backend: when one backend of N
 * leaves, only its own share of clients moves.  Building is control-path work
 * (allocates); lookup is a multiply and a load, no division.
 */
#ifndef TETHER_MAGLEV_H
#define TETHER_MAGLEV_H

#include <stdbool.h>
#include <stdint.h>

#define MAGLEV_DEFAULT_SIZE 65537u
#define MAGLEV_NO_BACKEND   0xffffu  /* slot value when no backend is active */

struct maglev_backend {
	const char *name;   /* stable identity: seeds the backend's permutation */
	uint16_t weight;    /* relative share, 1..1000; 0 behaves as inactive */
	bool active;        /* may take new flows */
};

struct maglev_table {
	uint32_t size;      /* prime */
	uint16_t *slots;    /* size entries: backend index or MAGLEV_NO_BACKEND */
};

/* True when n is prime (table sizes must be). */
bool maglev_is_prime(uint32_t n);

/*
 * Build `table` of `size` slots (a prime, >= backend_count) over `backends`.
 * Returns 0, -EINVAL (size not prime, too few slots, > 65535 backends) or
 * -ENOMEM.  Control path only.  Release with maglev_free().
 */
int maglev_build(struct maglev_table *table, uint32_t size,
		 const struct maglev_backend *backends, unsigned backend_count);

void maglev_free(struct maglev_table *table);

/* Backend index for a 32-bit flow hash; MAGLEV_NO_BACKEND when none is active.
 * Lock-free, no division: maps the hash onto [0, size) by multiply-shift. */
static inline uint16_t
maglev_lookup(const struct maglev_table *table, uint32_t hash)
{
	return table->slots[((uint64_t)hash * table->size) >> 32];
}

#endif /* TETHER_MAGLEV_H */
