/*
 * persist.h: persistence tables: a key -> backend, with a timeout refreshed
 * by traffic.  Two kinds use it: source-IP persistence, keyed by (service,
 * client prefix), and TLS sessions, keyed by (pool, session ID | ticket digest
 * | ticket key name); see struct session_key.
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

#define PERSIST_KEY_MAX 40

/* Source-IP persistence key. */
struct persist_key {
	uint32_t client;           /* masked to the service's source prefix, network order */
	uint16_t service;
	uint16_t pad;
};

enum session_kind { SESSION_ID = 1, SESSION_TICKET = 2, SESSION_KEY_NAME = 3 };

/* TLS session key.  A ticket is keyed by its first 16 bytes (the key name in
 * OpenSSL's and RFC 5077's layout) plus a 128-bit SipHash digest of the whole,
 * so a ticket of any length fits a fixed key; a collision would at worst send
 * one client to another server, which then does a full handshake. */
struct session_key {
	uint16_t pool;
	uint8_t kind;              /* enum session_kind */
	uint8_t length;            /* bytes used */
	uint8_t bytes[32];
};

struct persist_entry {
	uint64_t expires;          /* TSC */
	uint32_t flows;            /* live flows steered by this entry */
	uint16_t backend;
	uint16_t in_use;
	uint8_t key[PERSIST_KEY_MAX];
};

struct persist_table {
	struct rte_hash *hash;
	struct persist_entry *entries;
	uint32_t capacity;
	uint32_t key_length;
	uint32_t live;
	uint32_t expire_cursor;
};

/* A table of `capacity` entries keyed by `key_length` (<= PERSIST_KEY_MAX)
 * bytes; 0 or -ENOMEM.  EAL must be up; `name` unique in the process. */
int persist_create(struct persist_table *table, const char *name, uint32_t capacity,
		   uint32_t key_length, int socket);
void persist_destroy(struct persist_table *table);

/* Entry index for `key`, or -1. */
int persist_lookup(const struct persist_table *table, const void *key);

/* Insert or overwrite `key` -> backend; returns the entry index or -ENOSPC. */
int persist_insert(struct persist_table *table, const void *key,
		   uint16_t backend, uint64_t expires);

/* Expire up to `budget` entries' worth; returns how many were removed. */
unsigned persist_expire(struct persist_table *table, uint64_t now, unsigned budget);

#endif /* TETHER_PERSIST_H */
