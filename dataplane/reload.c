/*
 * reload.c: hitless reloads, backend state changes and key names; the design
 * is in reload.h.
 */
#include "reload.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <rte_ring.h>

#include "persist.h"
#include "pipeline.h"
#include "worker.h"

#define HANDOVER_TIMEOUT_MS 2000

/* Give `next` to every worker and wait until each has taken it. */
static int
hand_over(struct dataplane_state *state, struct services *next)
{
	struct timespec pause = { 0, 100000 };

	for (unsigned w = 0; w < state->worker_count; w++)
		__atomic_store_n(&state->workers[w].pending_services, next, __ATOMIC_RELEASE);
	for (unsigned waited = 0; waited < HANDOVER_TIMEOUT_MS * 10; waited++) {
		bool all = true;
		for (unsigned w = 0; w < state->worker_count; w++)
			all &= __atomic_load_n(&state->workers[w].pending_services, __ATOMIC_ACQUIRE) == NULL;
		if (all)
			return 0;
		nanosleep(&pause, NULL);
	}
	return -ETIMEDOUT;
}

/* Build tables for `config` (next hops resolved on every worker). */
static struct services *
build(struct dataplane_state *state, const struct config *config, char *error, size_t error_size)
{
	struct services *next = calloc(1, sizeof(*next));
	int rc;

	if (!next || (rc = services_build(next, config, &state->registry)) < 0) {
		snprintf(error, error_size, "building tables: %s", next ? strerror(-rc) : "out of memory");
		free(next);
		return NULL;
	}
	for (unsigned w = 0; w < state->worker_count; w++) {
		if (worker_resolve_backends(&state->workers[w], next, error, error_size) < 0) {
			services_free(next);
			free(next);
			return NULL;
		}
	}
	next->generation = ++state->generation;
	return next;
}

static int
swap_in(struct dataplane_state *state, struct services *next, char *error, size_t error_size)
{
	struct services *old = state->services;

	if (hand_over(state, next) < 0) {
		/* a worker that does not take it within 2 s is stuck; keep both alive */
		snprintf(error, error_size, "the worker did not take the new tables in time");
		return -ETIMEDOUT;
	}
	state->services = next;
	services_free(old);
	free(old);
	return 0;
}

int
reload_initial(struct dataplane_state *state, char *error, size_t error_size)
{
	state->services = build(state, &state->config, error, error_size);
	if (!state->services)
		return -ENOMEM;
	for (unsigned w = 0; w < state->worker_count; w++)
		state->workers[w].services = state->services;
	return 0;
}

int
reload_config(struct dataplane_state *state, const char *file, struct config_errors *errors,
	      char *error, size_t error_size)
{
	struct config config;

	errors->count = 0;
	if (config_load_file(file, &config, errors) < 0)
		return -EINVAL;
	if (memcmp(&config.dataplane, &state->config.dataplane, sizeof(config.dataplane)) != 0) {
		snprintf(error, error_size, "the \"dataplane\" section differs from the running one "
			 "(ports, table sizes): restart tether-dataplane to apply it");
		config_free(&config);
		return -EPERM;
	}
	struct services *next = build(state, &config, error, error_size);
	if (!next) {
		config_free(&config);
		return -ENOMEM;
	}
	int rc = swap_in(state, next, error, error_size);
	if (rc < 0) {
		config_free(&config);
		return rc;
	}
	config_free(&state->config);
	state->config = config;
	snprintf(state->config_file, sizeof(state->config_file), "%s", file);
	return 0;
}

int
reload_set_backend(struct dataplane_state *state, const char *pool, const char *name,
		   enum backend_desired_state desired, int weight)
{
	int id = services_registry_find_backend(&state->registry, pool, name, &state->config);

	if (id < 0)
		return -ENOENT;
	struct backend_identity *identity = &state->registry.backends[id];
	identity->state = (uint8_t)desired;
	if (weight >= 0) {
		identity->weight_set = true;
		identity->weight = (uint16_t)weight;
	}
	return 0;
}

int
reload_apply(struct dataplane_state *state, char *error, size_t error_size)
{
	struct services *next = build(state, &state->config, error, error_size);

	if (!next)
		return -ENOMEM;
	return swap_in(state, next, error, error_size);
}

int
reload_key_name(struct dataplane_state *state, const char *pool, const char *name,
		const uint8_t key_name[16])
{
	int id = services_registry_find_backend(&state->registry, pool, name, &state->config);
	int pool_index = config_pool_index(&state->config, pool);

	if (id < 0 || pool_index < 0)
		return -ENOENT;
	struct worker_message message = { .kind = WORKER_MESSAGE_KEY_NAME, .backend = (uint16_t)id };
	message.key.pool = state->services->pools[pool_index].id;
	message.key.kind = SESSION_KEY_NAME;
	message.key.length = 16;
	memcpy(message.key.bytes, key_name, 16);
	for (unsigned w = 0; w < state->worker_count; w++)
		if (state->workers[w].messages &&
		    rte_ring_enqueue_elem(state->workers[w].messages, &message, sizeof(message)) != 0)
			return -ENOSPC;
	return 0;
}

void
reload_free(struct dataplane_state *state)
{
	if (state->services) {
		services_free(state->services);
		free(state->services);
		state->services = NULL;
	}
	config_free(&state->config);
}
