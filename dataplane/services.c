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

static void
build_service(struct services *services, unsigned index, const struct config_service *conf)
{
	struct runtime_service *service = &services->services[index];

	service->vip = rte_cpu_to_be_32(conf->vip);
	service->port = rte_cpu_to_be_16(conf->port);
	service->target_port = rte_cpu_to_be_16(conf->target_port);
	service->protocol = conf->protocol == CONFIG_PROTO_UDP ? IPPROTO_UDP : IPPROTO_TCP;
	service->pool = (uint16_t)conf->pool;
	service->persistence = conf->persistence.mode;
	service->fallback = conf->persistence.fallback;
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
}

int
services_rebuild_pool(struct services *services, unsigned pool_index, uint32_t table_size)
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
	   uint32_t table_size)
{
	struct runtime_pool *pool = &services->pools[index];

	snprintf(pool->name, sizeof(pool->name), "%s", conf->name);
	pool->first_backend = (uint16_t)services->backend_count;
	pool->backend_count = (uint16_t)conf->backend_count;
	for (unsigned i = 0; i < conf->backend_count; i++) {
		const struct config_backend *b = &conf->backends[i];
		struct runtime_backend *backend = &services->backends[services->backend_count++];
		backend->address = rte_cpu_to_be_32(b->address);
		backend->port = rte_cpu_to_be_16(b->port);
		backend->pool = (uint16_t)index;
		backend->weight = b->weight;
		backend->active = b->enabled && b->weight > 0;
		snprintf(backend->name, sizeof(backend->name), "%s", b->name);
	}
	return services_rebuild_pool(services, index, table_size);
}

int
services_build(struct services *services, const struct config *config)
{
	unsigned backend_total = 0;

	memset(services, 0, sizeof(*services));
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
		if (build_pool(services, p, &config->pools[p], config->dataplane.maglev_table_size) < 0)
			goto fail;
	services->service_count = config->service_count;
	for (unsigned s = 0; s < config->service_count; s++)
		build_service(services, s, &config->services[s]);
	return 0;
fail:
	services_free(services);
	return -ENOMEM;
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
