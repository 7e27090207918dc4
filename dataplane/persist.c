/*
 * persist.c: source-IP persistence entries; see persist.h.
 */
#include "persist.h"

#include <errno.h>
#include <string.h>

#include <rte_common.h>
#include <rte_hash.h>
#include <rte_hash_crc.h>
#include <rte_malloc.h>

int
persist_create(struct persist_table *table, const char *name, uint32_t capacity,
		uint32_t key_length, int socket)
{
	struct rte_hash_parameters parameters = {
		.name = name,
		.entries = capacity,
		.key_len = key_length,
		.hash_func = rte_hash_crc,
		.socket_id = socket,
		.extra_flag = RTE_HASH_EXTRA_FLAGS_EXT_TABLE,
	};

	memset(table, 0, sizeof(*table));
	table->hash = rte_hash_create(&parameters);
	/* rte_hash positions run up to its real capacity, which may round up. */
	table->capacity = table->hash ? (uint32_t)rte_hash_max_key_id(table->hash) + 1 : 0;
	table->entries = rte_zmalloc_socket("persist", sizeof(struct persist_entry) * table->capacity,
					    RTE_CACHE_LINE_SIZE, socket);
	if (!table->hash || !table->entries || key_length > PERSIST_KEY_MAX) {
		persist_destroy(table);
		return -ENOMEM;
	}
	table->key_length = key_length;
	return 0;
}

void
persist_destroy(struct persist_table *table)
{
	rte_hash_free(table->hash);
	rte_free(table->entries);
	memset(table, 0, sizeof(*table));
}

int
persist_lookup(const struct persist_table *table, const void *key)
{
	int position = rte_hash_lookup(table->hash, key);
	return position < 0 ? -1 : position;
}

int
persist_insert(struct persist_table *table, const void *key,
	       uint16_t backend, uint64_t expires)
{
	int position = rte_hash_add_key(table->hash, key);

	if (position < 0)
		return -ENOSPC;
	struct persist_entry *entry = &table->entries[position];
	if (!entry->in_use) {
		table->live++;
		entry->flows = 0;
	}
	memcpy(entry->key, key, table->key_length);
	entry->backend = backend;
	entry->expires = expires;
	entry->in_use = 1;
	return position;
}

unsigned
persist_expire(struct persist_table *table, uint64_t now, unsigned budget)
{
	unsigned expired = 0;
	uint32_t cursor = table->expire_cursor;

	if (table->capacity == 0)
		return 0;
	while (budget--) {
		struct persist_entry *entry = &table->entries[cursor];
		if (entry->in_use && entry->flows == 0 && now > entry->expires) {
			rte_hash_del_key(table->hash, entry->key);
			entry->in_use = 0;
			table->live--;
			expired++;
		}
		if (++cursor == table->capacity)
			cursor = 0;
	}
	table->expire_cursor = cursor;
	return expired;
}
