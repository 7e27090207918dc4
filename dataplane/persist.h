/*
 * persist.h: the source-IP persistence table: (service, client prefix) ->
 * backend, with a timeout refreshed by traffic.
 *
 * As in LVS, an entry's timeout counts from the last new connection it
 * steered, and an entry that still has live flows is never expired: a client
 * that keeps one long connection open keeps its backend for the next one.
 * Entries live in an array indexed by the rte_hash position of their key, so
 * a lookup is one hash probe and one load.  Single writer (the worker).
 */
#ifndef TETHER_PERSIST_H
#define TETHER_PERSIST_H

#include <stdint.h>

struct rte_hash;

struct persist_key {
	uint32_t client;           /* masked to the service's source prefix, network order */
	uint16_t service;
	uint16_t pad;
};

struct persist_entry {
	struct persist_key key;
	uint64_t expires;          /* TSC */
	uint32_t flows;            /* live flows steered by this entry */
	uint16_t backend;
	uint16_t in_use;
};

struct persist_table {
	struct rte_hash *hash;
	struct persist_entry *entries;
	uint32_t capacity;
	uint32_t live;
	uint32_t expire_cursor;
};

int persist_create(struct persist_table *table, const char *name, uint32_t capacity, int socket);
void persist_destroy(struct persist_table *table);

/* Entry index for `key`, or -1. */
int persist_lookup(const struct persist_table *table, const struct persist_key *key);

/* Insert or overwrite `key` -> backend; returns the entry index or -ENOSPC. */
int persist_insert(struct persist_table *table, const struct persist_key *key,
		   uint16_t backend, uint64_t expires);

/* Expire up to `budget` entries' worth; returns how many were removed. */
unsigned persist_expire(struct persist_table *table, uint64_t now, unsigned budget);

#endif /* TETHER_PERSIST_H */
