/*
 * telemetry.c: rte_telemetry commands; see telemetry.h.
 */
#include "telemetry.h"

#include <rte_telemetry.h>

#include "pipeline.h"
#include "reload.h"
#include "synproxy.h"

static struct dataplane_state *telemetry_state;

static uint64_t
sum(size_t offset)
{
	uint64_t total = 0;

	for (unsigned w = 0; w < telemetry_state->worker_count; w++)
		total += *(const uint64_t *)((const char *)&telemetry_state->workers[w] + offset);
	return total;
}

#define ADD(data, name, field) \
	rte_tel_data_add_dict_u64(data, name, sum(offsetof(struct worker, field)))

static int
stats_command(const char *command, const char *parameters, struct rte_tel_data *data)
{
	(void)command;
	(void)parameters;
	rte_tel_data_start_dict(data);
	ADD(data, "public_rx_packets", stats.ports[PORT_PUBLIC].rx_packets);
	ADD(data, "public_tx_packets", stats.ports[PORT_PUBLIC].tx_packets);
	ADD(data, "private_rx_packets", stats.ports[PORT_PRIVATE].rx_packets);
	ADD(data, "private_tx_packets", stats.ports[PORT_PRIVATE].tx_packets);
	ADD(data, "flows_created", stats.flows_created);
	ADD(data, "flows_expired", stats.flows_expired);
	uint64_t live = 0;
	for (unsigned w = 0; w < telemetry_state->worker_count; w++)
		live += telemetry_state->workers[w].flows.live;
	rte_tel_data_add_dict_u64(data, "flows_live", live);
	for (unsigned r = 1; r < PACKET_REASON_COUNT; r++) {
		char name[64];
		snprintf(name, sizeof(name), "drop_%s", packet_reason_name(r));
		rte_tel_data_add_dict_u64(data, name, sum(offsetof(struct worker, stats.drops) +
							 r * sizeof(uint64_t)));
	}
	for (unsigned w = 0; w < telemetry_state->worker_count; w++) {
		const struct synproxy *proxy = telemetry_state->workers[w].synproxy;
		if (!proxy)
			continue;
		rte_tel_data_add_dict_u64(data, "ssl_hit_session_id", proxy->stats.hit_session_id);
		rte_tel_data_add_dict_u64(data, "ssl_hit_ticket", proxy->stats.hit_ticket);
		rte_tel_data_add_dict_u64(data, "ssl_hit_key_name", proxy->stats.hit_key_name);
		rte_tel_data_add_dict_u64(data, "ssl_cookies_invalid", proxy->stats.cookies_invalid);
		rte_tel_data_add_dict_u64(data, "ssl_sessions_live", proxy->sessions.live);
		break;   /* one worker today */
	}
	return 0;
}

static int
backends_command(const char *command, const char *parameters, struct rte_tel_data *data)
{
	const struct services_registry *registry = &telemetry_state->registry;

	(void)command;
	(void)parameters;
	rte_tel_data_start_dict(data);
	for (unsigned i = 0; i < registry->backend_count && i < 256; i++) {
		char name[2 * CONFIG_NAME_MAX + 2];
		snprintf(name, sizeof(name), "%s/%s", registry->backends[i].pool, registry->backends[i].name);
		rte_tel_data_add_dict_string(data, name, services_state_name(registry->backends[i].state));
	}
	return 0;
}

int
telemetry_register(struct dataplane_state *state)
{
	int rc;

	telemetry_state = state;
	rc = rte_telemetry_register_cmd("/tether/stats", stats_command,
					"tether dataplane counters: ports, drops by reason, flows, ssl-session");
	if (rc == 0)
		rc = rte_telemetry_register_cmd("/tether/backends", backends_command,
						"tether backends' desired state (pool/name: state)");
	return rc;
}
