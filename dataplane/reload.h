/*
 * reload.h: hitless changes to a running dataplane, driven from the main
 * lcore (dataplane.sock): a new config file, backends' desired states and
 * weights, ticket key names.
 *
 * Tables are never changed under a worker: a new set is built beside the old,
 * handed to the worker, and the old one freed only once the worker has taken
 * the new one at the top of its loop (a quiescent-state handshake; with one
 * reader it is what rte_rcu_qsbr would do).  Writes to the worker's own tables
 * go through a ring the worker drains.  A change that fails leaves everything
 * as it was.
 */
#ifndef TETHER_RELOAD_H
#define TETHER_RELOAD_H

#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "services.h"

struct worker;

struct dataplane_state {
	struct config config;               /* what runs */
	char config_file[CONFIG_PATH_MAX];
	struct services_registry registry;
	struct services *services;          /* what the worker reads */
	struct worker *workers;
	unsigned worker_count;
	uint64_t generation;
};

/* Build the first tables from state->config (before the worker starts). */
int reload_initial(struct dataplane_state *state, char *error, size_t error_size);

/*
 * Load `file` and swap it in.  On a refused file returns -EINVAL with
 * `errors` filled (JSON paths); on other failures a negative errno with
 * `error` filled.  The dataplane section (ports, table sizes) cannot change
 * without a restart: such a file is refused with that message.
 */
int reload_config(struct dataplane_state *state, const char *file, struct config_errors *errors,
		  char *error, size_t error_size);

/* Record desired states (not applied until reload_apply()).  -ENOENT when
 * no backend `name` in pool `pool`. */
int reload_set_backend(struct dataplane_state *state, const char *pool, const char *name,
		       enum backend_desired_state desired, int weight);

/* Rebuild and swap the tables so recorded desired states take effect. */
int reload_apply(struct dataplane_state *state, char *error, size_t error_size);

/* Hand a ticket key name of backend (pool, name) to the workers; -ENOENT when
 * unknown, -ENOSPC when a worker's ring is full. */
int reload_key_name(struct dataplane_state *state, const char *pool, const char *name,
		    const uint8_t key_name[16]);

void reload_free(struct dataplane_state *state);

#endif /* TETHER_RELOAD_H */
