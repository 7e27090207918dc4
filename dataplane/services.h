/*
 * services.h: the runtime tables the workers read, built from a struct config:
 * services keyed by (VIP, port, protocol), pools with their Maglev tables, and
 * one flat array of backends (a backend that sits in two pools has two
 * entries, so its counters and health are per pool).
 *
 * Built on the control path (allocates) and read lock-free by the workers; a
 * reload or a backend state change builds a new set and swaps it in (main.c).
 * Services, pools and backends carry stable IDs, kept by a registry across
 * swaps (a backend is the same backend while its pool, name, address and port
 * are): flows, persistence entries and counters refer to IDs, never to array
 * positions, so they stay right when the tables around them change.
 * Addresses and ports here are in network byte order, ready to compare with
 * and write into packets.
 */
#ifndef TETHER_SERVICES_H
#define TETHER_SERVICES_H

#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "maglev.h"

#define SERVICES_LOOKUP_SLOTS 1024   /* power of two, > 2 x CONFIG_SERVICES_MAX */
#define SERVICE_IDS  1024            /* distinct service names over a process's life */
#define POOL_IDS     1024
#define BACKEND_IDS  8192            /* distinct (pool, name, address, port) */
#define SERVICES_NO_INDEX 0xffff

/* What the control plane (or an operator) wants of a backend. */
enum backend_desired_state {
	BACKEND_UP = 0,            /* default until told otherwise: may take new flows */
	BACKEND_DOWN,              /* health checks failed */
	BACKEND_DRAIN,             /* no new flows or persistence; existing ones finish */
	BACKEND_DISABLED,          /* operator */
};

struct backend_identity {
	char pool[CONFIG_NAME_MAX];
	char name[CONFIG_NAME_MAX];
	uint32_t address;          /* host order, as in the config */
	uint16_t port;
	uint8_t state;             /* enum backend_desired_state */
	bool weight_set;           /* weight overrides the config's */
	uint16_t weight;
};

/* Name -> ID maps that outlive every table set.  Main lcore only. */
struct services_registry {
	unsigned service_count, pool_count, backend_count;
	char service_names[SERVICE_IDS][CONFIG_NAME_MAX];
	char pool_names[POOL_IDS][CONFIG_NAME_MAX];
	struct backend_identity backends[BACKEND_IDS];
};

struct runtime_backend {
	uint32_t address;
	uint16_t port;             /* backend's own port, 0 = use the service's */
	uint16_t pool;             /* index */
	uint16_t id;               /* stable */
	uint16_t neighbor;         /* next hop: itself, or the private gateway */
	uint16_t weight;
	bool active;               /* may take new flows (enabled, weight > 0, healthy) */
	char name[CONFIG_NAME_MAX];
};

struct runtime_pool {
	char name[CONFIG_NAME_MAX];
	uint16_t id;               /* stable */
	uint16_t first_backend;    /* backends of pool p: [first, first + count) */
	uint16_t backend_count;
	struct maglev_table maglev; /* slot -> index relative to first_backend */
};

struct runtime_prefix {
	uint32_t network;          /* network order, already masked */
	uint32_t mask;
};

struct runtime_service {
	uint32_t vip;
	uint16_t port;
	uint16_t target_port;      /* 0: backend's port, else this */
	uint8_t protocol;
	uint8_t persistence;       /* enum config_persistence_mode */
	uint8_t fallback;          /* enum config_fallback (ssl-session only) */
	uint8_t syn_cookies;       /* enum config_syn_cookies */
	uint16_t id;               /* stable */
	uint16_t pool;             /* index */
	uint16_t pool_id;          /* stable: TLS sessions are remembered per pool */
	uint32_t source_mask;      /* source-ip persistence prefix, network order */
	uint32_t persist_timeout_s;
	uint16_t allow_count;
	struct runtime_prefix allow[CONFIG_ALLOW_MAX];
	char name[CONFIG_NAME_MAX];
};

struct services {
	unsigned service_count, pool_count, backend_count, vip_count;
	struct runtime_service *services;
	struct runtime_pool *pools;
	struct runtime_backend *backends;
	uint32_t *vips;                              /* distinct VIPs */
	uint16_t lookup[SERVICES_LOOKUP_SLOTS];      /* service index + 1, 0 = empty */
	uint32_t vip_lookup[SERVICES_LOOKUP_SLOTS];  /* VIPs, 0 = empty */
	uint16_t service_index[SERVICE_IDS];         /* id -> index or SERVICES_NO_INDEX */
	uint16_t backend_index[BACKEND_IDS];
	uint64_t generation;                         /* counts swaps */
};

/*
 * Build `services` from a validated config, taking IDs (and each backend's
 * desired state and weight override) from `registry`, which learns new names.
 * Neighbor indexes are filled by the caller (they depend on the ports).
 * Returns 0, -ENOSPC when the registry is full, or -ENOMEM.  Control path.
 */
int services_build(struct services *services, const struct config *config,
		   struct services_registry *registry);
void services_free(struct services *services);

static inline uint32_t
services_slot(uint32_t vip, uint16_t port, uint8_t protocol)
{
	uint32_t h = vip ^ ((uint32_t)port << 16) ^ protocol;
	h *= 0x9e3779b1u;
	return h >> 22;            /* top 10 bits: SERVICES_LOOKUP_SLOTS */
}

/* Service index for a destination, or -1.  Lock-free, any lcore. */
static inline int
services_find(const struct services *services, uint32_t vip, uint16_t port, uint8_t protocol)
{
	for (uint32_t slot = services_slot(vip, port, protocol);; slot = (slot + 1) & (SERVICES_LOOKUP_SLOTS - 1)) {
		uint16_t entry = services->lookup[slot];
		if (entry == 0)
			return -1;
		const struct runtime_service *service = &services->services[entry - 1];
		if (service->vip == vip && service->port == port && service->protocol == protocol)
			return entry - 1;
	}
}

/* True when `address` is one of the VIPs. */
static inline bool
services_is_vip(const struct services *services, uint32_t address)
{
	for (uint32_t slot = services_slot(address, 0, 0);; slot = (slot + 1) & (SERVICES_LOOKUP_SLOTS - 1)) {
		uint32_t entry = services->vip_lookup[slot];
		if (entry == 0)
			return false;
		if (entry == address)
			return true;
	}
}

/* True when `source` may open a flow to `service` (allow_from; empty = all). */
static inline bool
services_source_allowed(const struct runtime_service *service, uint32_t source)
{
	if (service->allow_count == 0)
		return true;
	for (unsigned i = 0; i < service->allow_count; i++)
		if ((source & service->allow[i].mask) == service->allow[i].network)
			return true;
	return false;
}

/* Destination port of a new flow to `backend` via `service` (network order):
 * the service's target_port, else the backend's port, else the service port. */
static inline uint16_t
services_backend_port(const struct runtime_service *service, const struct runtime_backend *backend)
{
	if (service->target_port)
		return service->target_port;
	return backend->port ? backend->port : service->port;
}

/* The runtime service / backend with stable `id`, or NULL when the current
 * tables have none (it was removed by a reload).  Lock-free, any lcore. */
static inline const struct runtime_service *
services_service_by_id(const struct services *services, uint16_t id)
{
	uint16_t index = id < SERVICE_IDS ? services->service_index[id] : SERVICES_NO_INDEX;
	return index == SERVICES_NO_INDEX ? NULL : &services->services[index];
}

static inline const struct runtime_backend *
services_backend_by_id(const struct services *services, uint16_t id)
{
	uint16_t index = id < BACKEND_IDS ? services->backend_index[id] : SERVICES_NO_INDEX;
	return index == SERVICES_NO_INDEX ? NULL : &services->backends[index];
}

/* ID of backend (pool name, name) in `registry`'s current entries, or -1. */
int services_registry_find_backend(const struct services_registry *registry, const char *pool,
				   const char *name, const struct config *config);

const char *services_state_name(enum backend_desired_state state);
int services_state_parse(const char *text);

#endif /* TETHER_SERVICES_H */
