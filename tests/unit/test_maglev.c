/*
 * test_maglev.c: the promises of dataplane/maglev.h, as clients see them:
 * traffic splits by weight, a backend that leaves moves only its own clients,
 * every node with the same config picks the same backend, adding a backend
 * moves little.  Measurements (deviations, moved fractions, build times) are
 * printed as "# ..." lines; the assertions use loose bounds.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "maglev.h"

#define SIZE        MAGLEV_DEFAULT_SIZE
#define SHARE_SLACK 0.01  /* one percentage point */

/* A pool of n backends named "backend-<i>", all active, weight 1. */
struct pool {
	unsigned count;
	char (*names)[32];
	struct maglev_backend *backends;
};

static struct pool
pool_new(unsigned count)
{
	struct pool pool = { .count = count };
	unsigned i;

	pool.names = calloc(count, sizeof(*pool.names));
	pool.backends = calloc(count, sizeof(*pool.backends));
	assert_non_null(pool.names);
	assert_non_null(pool.backends);
	for (i = 0; i < count; i++) {
		snprintf(pool.names[i], sizeof(pool.names[i]), "backend-%u", i);
		pool.backends[i].name = pool.names[i];
		pool.backends[i].weight = 1;
		pool.backends[i].active = true;
	}
	return pool;
}

static void
pool_free(struct pool *pool)
{
	free(pool->names);
	free(pool->backends);
}

static struct maglev_table
build(const struct pool *pool)
{
	struct maglev_table table;

	assert_int_equal(maglev_build(&table, SIZE, pool->backends, pool->count), 0);
	assert_int_equal(table.size, SIZE);
	return table;
}

/* Slots per backend; every slot must name a backend of the pool. */
static void
count_slots(const struct maglev_table *table, unsigned count, uint32_t *owned)
{
	uint32_t slot;

	memset(owned, 0, count * sizeof(*owned));
	for (slot = 0; slot < table->size; slot++) {
		assert_true(table->slots[slot] < count);
		owned[table->slots[slot]]++;
	}
}

/* Asserts every active backend's share is within a point of its weight's
 * share among the active ones, inactive ones own nothing; returns the
 * largest deviation. */
static double
check_shares(const struct maglev_table *table, const struct pool *pool)
{
	uint32_t *owned = calloc(pool->count, sizeof(*owned));
	double weight_sum = 0, deviation_max = 0;
	unsigned i;

	assert_non_null(owned);
	count_slots(table, pool->count, owned);
	for (i = 0; i < pool->count; i++) {
		if (pool->backends[i].active)
			weight_sum += pool->backends[i].weight;
	}
	for (i = 0; i < pool->count; i++) {
		const struct maglev_backend *backend = &pool->backends[i];
		double share = (double)owned[i] / table->size;
		double want = backend->active ? backend->weight / weight_sum : 0;

		if (!backend->active || backend->weight == 0) {
			assert_int_equal(owned[i], 0);
			continue;
		}
		if (fabs(share - want) > deviation_max)
			deviation_max = fabs(share - want);
		if (fabs(share - want) > SHARE_SLACK)
			fail_msg("backend %u: share %.5f, want %.5f", i, share, want);
	}
	free(owned);
	return deviation_max;
}

static double
moved_fraction(const struct maglev_table *before, const struct maglev_table *after)
{
	uint32_t slot, moved = 0;

	for (slot = 0; slot < before->size; slot++)
		moved += before->slots[slot] != after->slots[slot];
	return (double)moved / before->size;
}

static double
elapsed_ms(const struct timespec *start, const struct timespec *end)
{
	return (end->tv_sec - start->tv_sec) * 1e3 +
	       (end->tv_nsec - start->tv_nsec) / 1e6;
}

static const unsigned pool_sizes[] = { 3, 5, 10, 100 };
#define POOL_SIZES (sizeof(pool_sizes) / sizeof(pool_sizes[0]))

/* Equal weights split traffic equally: with N backends of weight 1 each gets
 * 1/N of new flows, within one point (Maglev is near-perfect). */
static void
test_equal_weights_split_traffic_equally(void **state)
{
	unsigned n;

	(void)state;
	for (n = 0; n < POOL_SIZES; n++) {
		struct pool pool = pool_new(pool_sizes[n]);
		struct maglev_table table = build(&pool);

		printf("# equal weights, N=%u: max |share - 1/N| = %.5f\n",
		       pool.count, check_shares(&table, &pool));
		maglev_free(&table);
		pool_free(&pool);
	}
}

/* Weights set the split: a backend of weight w gets w/sum of new flows,
 * within one point. */
static void
test_weights_set_traffic_shares(void **state)
{
	static const uint16_t cases[][5] = {
		{ 1, 2, 3, 4 },
		{ 1, 1, 10 },
		{ 1000, 1, 500, 250, 7 },
	};
	unsigned c, i;

	(void)state;
	for (c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		struct pool pool = pool_new(5);
		struct maglev_table table;

		for (pool.count = 0; pool.count < 5 && cases[c][pool.count]; pool.count++)
			pool.backends[pool.count].weight = cases[c][pool.count];
		table = build(&pool);
		printf("# weights");
		for (i = 0; i < pool.count; i++)
			printf(" %u", cases[c][i]);
		printf(": max |share - w/sum| = %.5f\n", check_shares(&table, &pool));
		maglev_free(&table);
		pool_free(&pool);
	}
}

/*
 * Backend `gone` of the pool leaves via `leave` (marked inactive, or weight
 * 0): no client of a surviving backend moves, the leaver's clients are spread
 * so the survivors' shares still follow their weights.  Returns the largest
 * share deviation afterwards.
 */
static double
check_leave(struct pool *pool, unsigned gone, void (*leave)(struct maglev_backend *),
	    void (*come_back)(struct maglev_backend *))
{
	struct maglev_table before = build(pool), after;
	uint32_t slot, moved = 0, owned_before = 0;
	double deviation;

	leave(&pool->backends[gone]);
	after = build(pool);
	for (slot = 0; slot < SIZE; slot++) {
		if (before.slots[slot] == gone) {
			owned_before++;
			moved++;
			assert_int_not_equal(after.slots[slot], gone);
		} else if (after.slots[slot] != before.slots[slot]) {
			fail_msg("N=%u, backend %u left: slot %u moved from %u to %u",
				 pool->count, gone, slot, before.slots[slot],
				 after.slots[slot]);
		}
	}
	assert_int_equal(moved, owned_before);
	/* check_shares() wants inactive == excluded; weight 0 means the same. */
	pool->backends[gone].active = false;
	deviation = check_shares(&after, pool);
	come_back(&pool->backends[gone]);
	maglev_free(&before);
	maglev_free(&after);
	return deviation;
}

static void mark_inactive(struct maglev_backend *b) { b->active = false; }
static void mark_active(struct maglev_backend *b) { b->active = true; }
static void set_weight_zero(struct maglev_backend *b) { b->weight = 0; }
static void set_weight_one(struct maglev_backend *b) { b->weight = 1; b->active = true; }

/* Indices to remove: all of them for small pools, a sample for N=100. */
static void
check_leave_each(void (*leave)(struct maglev_backend *),
		 void (*come_back)(struct maglev_backend *), const char *how)
{
	static const unsigned sample[] = { 0, 1, 37, 50, 98, 99 };
	unsigned n, k;

	for (n = 0; n < POOL_SIZES; n++) {
		struct pool pool = pool_new(pool_sizes[n]);
		unsigned tries = pool.count <= 10 ? pool.count : sizeof(sample) / sizeof(sample[0]);
		double deviation_max = 0;

		for (k = 0; k < tries; k++) {
			unsigned gone = pool.count <= 10 ? k : sample[k];
			double deviation = check_leave(&pool, gone, leave, come_back);

			if (deviation > deviation_max)
				deviation_max = deviation;
		}
		printf("# %s, N=%u -> %u: max |share - 1/(N-1)| = %.5f\n",
		       how, pool.count, pool.count - 1, deviation_max);
		pool_free(&pool);
	}
}

/* A backend that goes down moves only its own clients, and they spread
 * evenly over the rest (within a point of 1/(N-1)). */
static void
test_inactive_backend_moves_only_its_own_clients(void **state)
{
	(void)state;
	check_leave_each(mark_inactive, mark_active, "one inactive");
}

/* Draining a backend by weight 0 behaves exactly like marking it inactive:
 * only its clients move, evenly; and both give the same table. */
static void
test_weight_zero_drains_like_inactive(void **state)
{
	struct pool pool = pool_new(10);
	struct maglev_table inactive, drained;

	(void)state;
	check_leave_each(set_weight_zero, set_weight_one, "one at weight 0");

	pool.backends[4].active = false;
	inactive = build(&pool);
	pool.backends[4].active = true;
	pool.backends[4].weight = 0;
	drained = build(&pool);
	assert_memory_equal(inactive.slots, drained.slots, SIZE * sizeof(uint16_t));
	maglev_free(&inactive);
	maglev_free(&drained);
	pool_free(&pool);
}

/* Weighted pools keep their proportions when one leaves: weights 1,2,3,4
 * minus any one give shares within a point of w/sum of the rest, and only
 * the leaver's clients move. */
static void
test_weighted_pool_keeps_proportions_when_one_leaves(void **state)
{
	struct pool pool = pool_new(4);
	double deviation_max = 0;
	unsigned gone;

	(void)state;
	for (gone = 0; gone < 4; gone++)
		pool.backends[gone].weight = (uint16_t)(gone + 1);
	for (gone = 0; gone < 4; gone++) {
		double deviation = check_leave(&pool, gone, mark_inactive, mark_active);

		if (deviation > deviation_max)
			deviation_max = deviation;
	}
	printf("# weights 1,2,3,4 minus one: max |share - w/sum| = %.5f\n",
	       deviation_max);
	pool_free(&pool);
}

/* Several down at once, and all but one: still only their clients move, and
 * the last one standing takes everything. */
static void
test_many_inactive_move_only_their_clients(void **state)
{
	struct pool pool = pool_new(100);
	struct maglev_table before = build(&pool), after;
	uint32_t slot;
	unsigned i;

	(void)state;
	for (i = 0; i < pool.count; i += 3)
		pool.backends[i].active = false;
	after = build(&pool);
	for (slot = 0; slot < SIZE; slot++) {
		if (pool.backends[before.slots[slot]].active)
			assert_int_equal(after.slots[slot], before.slots[slot]);
	}
	printf("# 100 backends, 34 inactive: max |share - 1/66| = %.5f\n",
	       check_shares(&after, &pool));
	maglev_free(&after);

	for (i = 0; i < pool.count; i++)
		pool.backends[i].active = i == 42;
	after = build(&pool);
	for (slot = 0; slot < SIZE; slot++)
		assert_int_equal(after.slots[slot], 42);
	maglev_free(&after);
	maglev_free(&before);
	pool_free(&pool);
}

/* Every node with the same config picks the same backend: the table depends
 * only on names, weights and active flags, not on where the names live in
 * memory or what was allocated before. */
static void
test_same_config_gives_same_table_on_every_node(void **state)
{
	struct pool pool = pool_new(50);
	struct maglev_backend copies[50];
	struct maglev_table first, second;
	void *clutter[50];
	unsigned i;

	(void)state;
	pool.backends[7].weight = 3;
	pool.backends[11].active = false;
	pool.backends[13].weight = 0;
	first = build(&pool);

	/* Same names at other addresses, in reverse allocation order, with
	 * unrelated allocations in between. */
	for (i = 0; i < 50; i++)
		clutter[i] = malloc(17 * (i + 1));
	for (i = 50; i-- > 0;) {
		copies[i] = pool.backends[i];
		copies[i].name = strdup(pool.names[i]);
		assert_non_null(copies[i].name);
	}
	assert_int_equal(maglev_build(&second, SIZE, copies, 50), 0);
	assert_memory_equal(first.slots, second.slots, SIZE * sizeof(uint16_t));

	for (i = 0; i < 50; i++) {
		free((void *)copies[i].name);
		free(clutter[i]);
	}
	maglev_free(&first);
	maglev_free(&second);
	pool_free(&pool);
}

/* Nodes on other machines, or running another build, agree too: the table
 * for a fixed config is pinned.  If this fails, the hash or the algorithm
 * changed, and a mixed-version cluster would send a client's packets to
 * different backends.  Change the pinned value only on purpose. */
static void
test_table_is_identical_across_machines_and_versions(void **state)
{
	static const struct maglev_backend backends[] = {
		{ .name = "198.51.100.1:80", .weight = 1, .active = true },
		{ .name = "198.51.100.2:80", .weight = 2, .active = true },
		{ .name = "198.51.100.3:80", .weight = 1, .active = false },
		{ .name = "198.51.100.4:80", .weight = 5, .active = true },
	};
	struct maglev_table table;
	uint64_t fingerprint = UINT64_C(0xcbf29ce484222325);
	uint32_t slot;

	(void)state;
	assert_int_equal(maglev_build(&table, 251, backends, 4), 0);
	for (slot = 0; slot < table.size; slot++) {
		fingerprint = (fingerprint ^ (table.slots[slot] & 0xff)) * UINT64_C(0x100000001b3);
		fingerprint = (fingerprint ^ (table.slots[slot] >> 8)) * UINT64_C(0x100000001b3);
	}
	printf("# pinned table fingerprint: 0x%016llx\n", (unsigned long long)fingerprint);
	assert_int_equal(fingerprint, UINT64_C(0x36e57b35c4c639ef));
	maglev_free(&table);
}

/* Adding a backend (N -> N+1, full rebuild) moves few clients: about
 * 1/(N+1), asserted <= 2/(N+1). */
static void
test_adding_a_backend_moves_few_clients(void **state)
{
	unsigned n;

	(void)state;
	for (n = 0; n < POOL_SIZES; n++) {
		struct pool grown = pool_new(pool_sizes[n] + 1);
		struct pool pool = grown;
		struct maglev_table before, after;
		double moved;

		pool.count = pool_sizes[n];
		before = build(&pool);
		after = build(&grown);
		moved = moved_fraction(&before, &after);
		printf("# N=%u -> %u: moved %.5f of slots (ideal 1/(N+1) = %.5f)\n",
		       pool.count, grown.count, moved, 1.0 / grown.count);
		assert_true(moved <= 2.0 / grown.count);
		maglev_free(&before);
		maglev_free(&after);
		pool_free(&grown);
	}
}

/* With no backend able to take flows, every lookup says so. */
static void
test_no_active_backend_maps_to_none(void **state)
{
	struct pool pool = pool_new(5);
	struct maglev_table table;
	uint32_t slot;
	unsigned i;

	(void)state;
	for (i = 0; i < pool.count; i++)
		pool.backends[i].active = i % 2 == 0 ? false : true;
	pool.backends[1].weight = 0;
	pool.backends[3].weight = 0;
	table = build(&pool);
	for (slot = 0; slot < SIZE; slot++)
		assert_int_equal(table.slots[slot], MAGLEV_NO_BACKEND);
	assert_int_equal(maglev_lookup(&table, 12345), MAGLEV_NO_BACKEND);
	maglev_free(&table);

	assert_int_equal(maglev_build(&table, 7, NULL, 0), 0);
	for (slot = 0; slot < 7; slot++)
		assert_int_equal(table.slots[slot], MAGLEV_NO_BACKEND);
	maglev_free(&table);
	pool_free(&pool);
}

/* A bad table request is refused whole with -EINVAL, leaving the caller's
 * table as it was. */
static void
test_bad_parameters_are_refused(void **state)
{
	struct pool pool = pool_new(11);
	struct maglev_table table = { .size = 1234, .slots = NULL };

	(void)state;
	assert_int_equal(maglev_build(&table, 65536, pool.backends, 3), -EINVAL);
	assert_int_equal(maglev_build(&table, 1, pool.backends, 0), -EINVAL);
	assert_int_equal(maglev_build(&table, 7, pool.backends, 11), -EINVAL);
	pool.backends[2].weight = 1001;
	assert_int_equal(maglev_build(&table, 13, pool.backends, 11), -EINVAL);
	pool.backends[2].weight = 1000;
	pool.backends[5].name = NULL;
	assert_int_equal(maglev_build(&table, 13, pool.backends, 11), -EINVAL);
	assert_int_equal(maglev_build(&table, 131071, pool.backends, 65536), -EINVAL);
	assert_int_equal(maglev_build(&table, 13, NULL, 2), -EINVAL);
	assert_int_equal(maglev_build(NULL, 13, pool.backends, 2), -EINVAL);
	assert_int_equal(table.size, 1234);
	assert_null(table.slots);

	/* Just enough slots is fine: size == backend count. */
	pool.backends[5].name = pool.names[5];
	assert_int_equal(maglev_build(&table, 11, pool.backends, 11), 0);
	maglev_free(&table);
	assert_null(table.slots);
	pool_free(&pool);
}

/* Table sizes are checked for primality correctly, up to 2^32 - 1. */
static void
test_is_prime(void **state)
{
	static const struct { uint32_t n; bool prime; } cases[] = {
		{ 0, false }, { 1, false }, { 2, true }, { 3, true }, { 4, false },
		{ 25, false }, { 49, false }, { 251, true }, { 65535, false },
		{ 65537, true }, { 131071, true }, { 1000003, true },
		{ 65521u * 65519u, false }, { 4294967291u, true },
		{ 4294967295u, false },
	};
	unsigned i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		if (maglev_is_prime(cases[i].n) != cases[i].prime)
			fail_msg("maglev_is_prime(%u) != %d", cases[i].n, cases[i].prime);
	}
}

/* Every flow hash lands inside the table, the extremes included: hash 0 on
 * the first slot, 0xffffffff on the last. */
static void
test_lookup_covers_whole_hash_range(void **state)
{
	static const uint32_t sizes[] = { 2, 7, 251, SIZE, 4294967291u };
	struct pool pool = pool_new(2);
	struct maglev_table table;
	unsigned i;

	(void)state;
	table = build(&pool);
	assert_int_equal(maglev_lookup(&table, 0), table.slots[0]);
	assert_int_equal(maglev_lookup(&table, 0xffffffffu), table.slots[SIZE - 1]);
	assert_true(maglev_lookup(&table, 0) < 2);
	assert_true(maglev_lookup(&table, 0xffffffffu) < 2);
	maglev_free(&table);

	/* The index arithmetic itself, for sizes too large to build here. */
	for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		assert_int_equal(((uint64_t)0 * sizes[i]) >> 32, 0);
		assert_int_equal(((uint64_t)0xffffffffu * sizes[i]) >> 32, sizes[i] - 1);
	}
	pool_free(&pool);
}

/* Build time for 10, 100, 1000 backends over 65537 slots (printed, not
 * asserted): a rebuild on a health change must be cheap. */
static void
test_build_time(void **state)
{
	static const unsigned counts[] = { 10, 100, 1000 };
	unsigned c, i;

	(void)state;
	for (c = 0; c < sizeof(counts) / sizeof(counts[0]); c++) {
		struct pool pool = pool_new(counts[c]);
		struct timespec start, end;
		struct maglev_table table;
		double all_up, half_down, skewed;

		clock_gettime(CLOCK_MONOTONIC, &start);
		table = build(&pool);
		clock_gettime(CLOCK_MONOTONIC, &end);
		all_up = elapsed_ms(&start, &end);
		maglev_free(&table);

		for (i = 0; i < pool.count; i += 2)
			pool.backends[i].active = false;
		clock_gettime(CLOCK_MONOTONIC, &start);
		table = build(&pool);
		clock_gettime(CLOCK_MONOTONIC, &end);
		half_down = elapsed_ms(&start, &end);
		maglev_free(&table);

		/* One heavy backend among light ones, all but one light one down. */
		for (i = 0; i < pool.count; i++)
			pool.backends[i].active = i < 2;
		pool.backends[0].weight = 1000;
		clock_gettime(CLOCK_MONOTONIC, &start);
		table = build(&pool);
		clock_gettime(CLOCK_MONOTONIC, &end);
		skewed = elapsed_ms(&start, &end);
		maglev_free(&table);

		printf("# build %u backends x %u slots: %.2f ms all up, %.2f ms half "
		       "down, %.2f ms skewed\n", pool.count, SIZE, all_up, half_down,
		       skewed);
		pool_free(&pool);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_equal_weights_split_traffic_equally),
		cmocka_unit_test(test_weights_set_traffic_shares),
		cmocka_unit_test(test_inactive_backend_moves_only_its_own_clients),
		cmocka_unit_test(test_weight_zero_drains_like_inactive),
		cmocka_unit_test(test_weighted_pool_keeps_proportions_when_one_leaves),
		cmocka_unit_test(test_many_inactive_move_only_their_clients),
		cmocka_unit_test(test_same_config_gives_same_table_on_every_node),
		cmocka_unit_test(test_table_is_identical_across_machines_and_versions),
		cmocka_unit_test(test_adding_a_backend_moves_few_clients),
		cmocka_unit_test(test_no_active_backend_maps_to_none),
		cmocka_unit_test(test_bad_parameters_are_refused),
		cmocka_unit_test(test_is_prime),
		cmocka_unit_test(test_lookup_covers_whole_hash_range),
		cmocka_unit_test(test_build_time),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
