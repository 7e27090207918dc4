/*
 * services.c: build the runtime service, pool and backend tables from a
 * validated config; see services.h.
 */
#include "services.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <netinet/in.h>
#include <rte_byteorder.h>

static uint32_t
prefix_mask(uint8_t length)
{
	return length == 0 ? 0 : rte_cpu_to_be_32(~0u << (32 - length));
}

static void
add_vip(struct services *services, uint32_t vip)
{
	uint32_t slot = services_slot(vip, 0, 0);

	while (services->vip_lookup[slot] != 0) {
		if (services->vip_lookup[slot] == vip)
			return;
		slot = (slot + 1) & (SERVICES_LOOKUP_SLOTS - 1);
	}
	services->vip_lookup[slot] = vip;
	services->vips[services->vip_count++] = vip;
}

static const char *const state_names[] = { "up", "down", "drain", "disabled" };

const char *
services_state_name(enum backend_desired_state state)
{
	return (unsigned)state < 4 ? state_names[state] : "unknown";
}

int
services_state_parse(const char *text)
{
	for (int i = 0; i < 4; i++)
		if (strcmp(text, state_names[i]) == 0)
			return i;
	return -1;
}

/* The ID of `name` in `names`, added when new; -ENOSPC when full. */
static int
name_id(char names[][CONFIG_NAME_MAX], unsigned *count, unsigned capacity, const char *name)
{
	for (unsigned i = 0; i < *count; i++)
		if (strcmp(names[i], name) == 0)
			return (int)i;
	if (*count == capacity)
		return -ENOSPC;
	snprintf(names[*count], CONFIG_NAME_MAX, "%s", name);
	return (int)(*count)++;
}

static int
backend_id(struct services_registry *registry, const char *pool, const struct config_backend *b)
{
	for (unsigned i = 0; i < registry->backend_count; i++) {
		const struct backend_identity *known = &registry->backends[i];
		if (strcmp(known->pool, pool) == 0 && strcmp(known->name, b->name) == 0 &&
		    known->address == b->address && known->port == b->port)
			return (int)i;
	}
	if (registry->backend_count == BACKEND_IDS)
		return -ENOSPC;
	struct backend_identity *identity = &registry->backends[registry->backend_count];
	memset(identity, 0, sizeof(*identity));
	snprintf(identity->pool, sizeof(identity->pool), "%s", pool);
	snprintf(identity->name, sizeof(identity->name), "%s", b->name);
	identity->address = b->address;
	identity->port = b->port;
	identity->state = BACKEND_UP;
	return (int)registry->backend_count++;
}

int
services_registry_find_backend(const struct services_registry *registry, const char *pool,
			       const char *name, const struct config *config)
{
	int p = config_pool_index(config, pool);

	if (p < 0)
		return -1;
	for (unsigned b = 0; b < config->pools[p].backend_count; b++) {
		const struct config_backend *backend = &config->pools[p].backends[b];
		if (strcmp(backend->name, name) != 0)
			continue;
		for (unsigned i = 0; i < registry->backend_count; i++) {
			const struct backend_identity *known = &registry->backends[i];
			if (strcmp(known->pool, pool) == 0 && strcmp(known->name, name) == 0 &&
			    known->address == backend->address && known->port == backend->port)
				return (int)i;
		}
	}
	return -1;
}

static int
build_service(struct services *services, unsigned index, const struct config_service *conf,
	      struct services_registry *registry)
{
	struct runtime_service *service = &services->services[index];
	int id = name_id(registry->service_names, &registry->service_count, SERVICE_IDS, conf->name);

	if (id < 0)
		return id;
	service->id = (uint16_t)id;
	services->service_index[id] = (uint16_t)index;

	service->vip = rte_cpu_to_be_32(conf->vip);
	service->port = rte_cpu_to_be_16(conf->port);
	service->target_port = rte_cpu_to_be_16(conf->target_port);
	service->protocol = conf->protocol == CONFIG_PROTO_UDP ? IPPROTO_UDP : IPPROTO_TCP;
	service->pool = (uint16_t)conf->pool;
	service->pool_id = services->pools[conf->pool].id;
	service->persistence = conf->persistence.mode;
	service->fallback = conf->persistence.fallback;
	service->syn_cookies = (uint8_t)conf->syn_cookies;
	service->source_mask = prefix_mask(conf->persistence.source_prefix_length);
	service->persist_timeout_s = conf->persistence.timeout_s;
	service->allow_count = (uint16_t)conf->allow_count;
	for (unsigned i = 0; i < conf->allow_count; i++) {
		service->allow[i].mask = prefix_mask(conf->allow_from[i].length);
		service->allow[i].network = rte_cpu_to_be_32(conf->allow_from[i].address) &
					    service->allow[i].mask;
	}
	snprintf(service->name, sizeof(service->name), "%s", conf->name);

	uint32_t slot = services_slot(service->vip, service->port, service->protocol);
	while (services->lookup[slot] != 0)
		slot = (slot + 1) & (SERVICES_LOOKUP_SLOTS - 1);
	services->lookup[slot] = (uint16_t)(index + 1);
	add_vip(services, service->vip);
	return 0;
}

static int
build_maglev(struct services *services, unsigned pool_index, uint32_t table_size)
{
	struct runtime_pool *pool = &services->pools[pool_index];
	struct maglev_backend *members = calloc(pool->backend_count, sizeof(*members));
	struct maglev_table table;

	if (!members)
		return -ENOMEM;
	for (unsigned i = 0; i < pool->backend_count; i++) {
		const struct runtime_backend *backend = &services->backends[pool->first_backend + i];
		members[i] = (struct maglev_backend){ backend->name, backend->weight, backend->active };
	}
	int rc = maglev_build(&table, table_size, members, pool->backend_count);
	free(members);
	if (rc < 0)
		return rc;
	maglev_free(&pool->maglev);
	pool->maglev = table;
	return 0;
}

static int
build_pool(struct services *services, unsigned index, const struct config_pool *conf,
	   uint32_t table_size, struct services_registry *registry)
{
	struct runtime_pool *pool = &services->pools[index];
	int id = name_id(registry->pool_names, &registry->pool_count, POOL_IDS, conf->name);

	if (id < 0)
		return id;
	pool->id = (uint16_t)id;
	snprintf(pool->name, sizeof(pool->name), "%s", conf->name);
	pool->first_backend = (uint16_t)services->backend_count;
	pool->backend_count = (uint16_t)conf->backend_count;
	for (unsigned i = 0; i < conf->backend_count; i++) {
		const struct config_backend *b = &conf->backends[i];
		int backend_index = (int)services->backend_count;
		struct runtime_backend *backend = &services->backends[services->backend_count++];
		int bid = backend_id(registry, conf->name, b);
		if (bid < 0)
			return bid;
		const struct backend_identity *identity = &registry->backends[bid];
		backend->id = (uint16_t)bid;
		services->backend_index[bid] = (uint16_t)backend_index;
		backend->address = rte_cpu_to_be_32(b->address);
		backend->port = rte_cpu_to_be_16(b->port);
		backend->pool = (uint16_t)index;
		backend->weight = identity->weight_set ? identity->weight : b->weight;
		backend->active = b->enabled && backend->weight > 0 && identity->state == BACKEND_UP;
		snprintf(backend->name, sizeof(backend->name), "%s", b->name);
	}
	return build_maglev(services, index, table_size);
}

int
services_build(struct services *services, const struct config *config,
	       struct services_registry *registry)
{
	unsigned backend_total = 0;
	int rc = -ENOMEM;

	memset(services, 0, sizeof(*services));
	memset(services->service_index, 0xff, sizeof(services->service_index));
	memset(services->backend_index, 0xff, sizeof(services->backend_index));
	for (unsigned p = 0; p < config->pool_count; p++)
		backend_total += config->pools[p].backend_count;
	services->services = calloc(config->service_count, sizeof(*services->services));
	services->pools = calloc(config->pool_count, sizeof(*services->pools));
	services->backends = calloc(backend_total ? backend_total : 1, sizeof(*services->backends));
	services->vips = calloc(config->service_count, sizeof(*services->vips));
	if (!services->services || !services->pools || !services->backends || !services->vips)
		goto fail;
	services->pool_count = config->pool_count;
	for (unsigned p = 0; p < config->pool_count; p++)
		if ((rc = build_pool(services, p, &config->pools[p], config->dataplane.maglev_table_size,
				     registry)) < 0)
			goto fail;
	services->service_count = config->service_count;
	for (unsigned s = 0; s < config->service_count; s++)
		if ((rc = build_service(services, s, &config->services[s], registry)) < 0)
			goto fail;
	return 0;
fail:
	services_free(services);
	return rc;
}

void
services_free(struct services *services)
{
	for (unsigned p = 0; p < services->pool_count && services->pools; p++)
		maglev_free(&services->pools[p].maglev);
	free(services->services);
	free(services->pools);
	free(services->backends);
	free(services->vips);
	memset(services, 0, sizeof(*services));
}
