/*
 * worker_fixture.h: one worker over two logical ports that no NIC backs
 * (public 198.51.100.2/25 at 02:aa:00:00:00:01, private 198.51.100.129/25 at
 * 02:aa:00:00:00:02), built from a config
 * text the way tether-dataplane builds its own, with every next hop resolved:
 * the unit tests that drive the real pipeline start from it.
 */
#ifndef TETHER_TEST_WORKER_FIXTURE_H
#define TETHER_TEST_WORKER_FIXTURE_H

#include <stdio.h>
#include <string.h>

#include <rte_cycles.h>

#include "config.h"
#include "packet_builder.h"
#include "pipeline.h"
#include "services.h"
#include "worker.h"

struct worker_fixture {
	struct config config;
	struct services services;
	struct services_registry registry;
};

/* 0, or -1 with the reason on stderr.  Neighbor i gets MAC 02:cc:00:00:00:i,
 * the gateway `gateway_mac` when given. */
static inline int
worker_fixture_setup(struct worker_fixture *fixture, struct worker *worker, const char *config_text,
		     struct rte_mempool *mempool, const struct rte_ether_addr *gateway_mac)
{
	struct config_errors errors;
	struct dataplane_port ports[2] = {
		{ .port_id = 0, .mac = {{ 0x02, 0xaa, 0, 0, 0, 0x01 }},
		  .address = builder_address("198.51.100.2"), .netmask = builder_address("255.255.255.128") },
		{ .port_id = 1, .mac = {{ 0x02, 0xaa, 0, 0, 0, 0x02 }},
		  .address = builder_address("198.51.100.129"), .netmask = builder_address("255.255.255.128") },
	};
	char error[256];

	if (config_parse(config_text, strlen(config_text), &fixture->config, &errors) < 0) {
		for (unsigned i = 0; i < errors.count && i < CONFIG_ERRORS_MAX; i++)
			fprintf(stderr, "%s: %s\n", errors.errors[i].path, errors.errors[i].message);
		return -1;
	}
	if (services_build(&fixture->services, &fixture->config, &fixture->registry) < 0 ||
	    worker_init(worker, 0, &fixture->config, &fixture->services, mempool, ports, error,
			sizeof(error)) < 0) {
		fprintf(stderr, "worker: %s\n", error);
		return -1;
	}
	worker->now = rte_rdtsc();
	for (unsigned i = 0; i < worker->neighbors.count; i++) {
		struct neighbor *neighbor = &worker->neighbors.entries[i];
		neighbor->state = NEIGHBOR_REACHABLE;
		neighbor->confirmed = worker->now;
		neighbor->next_probe = UINT64_MAX;
		neighbor->mac = gateway_mac && i == worker->ports[PORT_PUBLIC].gateway_neighbor ?
			*gateway_mac : (struct rte_ether_addr){{ 0x02, 0xcc, 0, 0, 0, (uint8_t)i }};
	}
	return 0;
}

static inline void
worker_fixture_teardown(struct worker_fixture *fixture, struct worker *worker)
{
	worker_free(worker);
	services_free(&fixture->services);
	config_free(&fixture->config);
}

#endif /* TETHER_TEST_WORKER_FIXTURE_H */
