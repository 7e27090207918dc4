/*
 * test_metrics.c: the Prometheus page says what the dataplane counted and what
 * the health checks found, in the exposition format 0.0.4, named by the
 * conventions (counters end in _total, gauges do not, one family per thing
 * with labels for its kinds); and the endpoint answers only GET /metrics.
 *
 * The dataplane's side is a canned `stats` reply
 * (fixtures/control/dataplane-stats.json, shaped field for field like
 * dataplane/api.c's); the health side is a table of backends.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "metrics.h"

#define STATS_FIXTURE "fixtures/control/dataplane-stats.json"

static const struct metrics_backend health_table[] = {
	{ .pool = "cp", .name = "be1", .state = "up", .health = 1, .unknown_counts_as_up = true, .weight = 1,
	  .check_latency_s = 0.0025, .expiry_known = true, .expiry_days = 89 },
	{ .pool = "cp", .name = "be2", .state = "drain", .health = 1, .unknown_counts_as_up = true, .weight = 2,
	  .check_latency_s = 0.004, .expiry_known = true, .expiry_days = -3 },
	{ .pool = "cp", .name = "be3", .state = "down", .health = 0, .unknown_counts_as_up = true, .weight = 1,
	  .check_latency_s = 0.5, .expiry_known = false },
	{ .pool = "web", .name = "be4", .state = "up", .health = -1, .unknown_counts_as_up = true, .weight = 1,
	  .check_latency_s = -1 },
};

static char *
render(const json_t *stats)
{
	struct metrics_snapshot snapshot = {
		.backends = health_table, .backend_count = sizeof(health_table) / sizeof(health_table[0]),
		.stats = stats, .last_reload_ok = true, .last_reload_success_time = 1700000000,
		.start_time = 1699990000,
	};
	char *page = metrics_render(&snapshot);
	assert_non_null(page);
	return page;
}

/* Lines the page must contain, exactly: the traffic the fixture counted. */
static const char *const expected_lines[] = {
	"tether_dataplane_up 1",
	"tether_service_new_flows_total{service=\"cp-shared\"} 300",
	"tether_service_new_flows_total{service=\"web\"} 200",
	"tether_service_bytes_total{service=\"cp-shared\",direction=\"in\"} 300000",
	"tether_service_bytes_total{service=\"cp-shared\",direction=\"out\"} 2900000",
	"tether_service_packets_total{service=\"web\",direction=\"out\"} 1900",
	"tether_service_persistence_hits_total{service=\"cp-shared\"} 120",
	"tether_backend_new_flows_total{pool=\"cp\",backend=\"be1\"} 160",
	"tether_backend_active_flows{pool=\"cp\",backend=\"be2\"} 12",
	"tether_backend_bytes_total{pool=\"cp\",backend=\"be2\",direction=\"out\"} 1400000",
	"tether_backend_neighbor_resolved{pool=\"cp\",backend=\"be2\"} 0",
	"tether_drops_total{reason=\"no_service\"} 17",
	"tether_drops_total{reason=\"acl_denied\"} 5",
	"tether_drops_total{reason=\"ip_fragment\"} 0",
	"tether_flows{state=\"live\"} 42",
	"tether_flows_capacity 65536",
	"tether_flows_created_total 500",
	"tether_persistence_entries 9",
	"tether_port_packets_total{port=\"public\",direction=\"rx\"} 1000",
	"tether_port_bytes_total{port=\"private\",direction=\"tx\"} 60800",
	"tether_port_tx_dropped_total{port=\"private\"} 3",
	"tether_arp_learned_total 3",
	"tether_icmp_errors_relayed_total 2",
	"tether_overload_level 1",
	"tether_overload_half_open 1030",
	"tether_overload_syn_cookies_entered_total 2",
	"tether_overload_syns_cookied_total 5000",
	"tether_ssl_session_hits_total{mechanism=\"session_id\"} 11",
	"tether_ssl_session_hits_total{mechanism=\"ticket\"} 12",
	"tether_ssl_session_hits_total{mechanism=\"key_name\"} 13",
	"tether_ssl_session_fallbacks_total{reason=\"new_session\"} 21",
	"tether_ssl_session_fallbacks_total{reason=\"not_tls\"} 22",
	"tether_ssl_session_learned_total{kind=\"key_name\"} 31",
	"tether_ssl_session_syn_cookies_total{result=\"sent\"} 40",
	"tether_ssl_session_entries 7",
	"tether_ssl_session_bindings_active 2",
	"tether_backend_up{pool=\"cp\",backend=\"be1\"} 1",
	"tether_backend_up{pool=\"cp\",backend=\"be3\"} 0",
	"tether_backend_up{pool=\"web\",backend=\"be4\"} 1",
	"tether_backend_state{pool=\"cp\",backend=\"be2\",state=\"drain\"} 1",
	"tether_backend_state{pool=\"cp\",backend=\"be2\",state=\"up\"} 0",
	"tether_backend_weight{pool=\"cp\",backend=\"be2\"} 2",
	"tether_backend_check_latency_seconds{pool=\"cp\",backend=\"be1\"} 0.002500",
	"tether_backend_certificate_expiry_days{pool=\"cp\",backend=\"be1\"} 89",
	"tether_backend_certificate_expiry_days{pool=\"cp\",backend=\"be2\"} -3",
	"tether_config_last_reload_successful 1",
	"# TYPE tether_service_new_flows_total counter",
	"# TYPE tether_backend_up gauge",
	"# TYPE tether_flows gauge",
	"# HELP tether_drops_total Packets dropped by the dataplane, by reason.",
};

static bool
has_line(const char *page, const char *line)
{
	size_t length = strlen(line);

	for (const char *at = page; (at = strstr(at, line)); at++)
		if ((at == page || at[-1] == '\n') && at[length] == '\n')
			return true;
	return false;
}

static void
test_render_from_canned_stats(void **state)
{
	json_error_t error;
	json_t *stats = json_load_file(STATS_FIXTURE, 0, &error);
	char *page;

	(void)state;
	if (!stats)
		fail_msg("%s: %s", STATS_FIXTURE, error.text);
	page = render(stats);
	for (size_t i = 0; i < sizeof(expected_lines) / sizeof(expected_lines[0]); i++)
		if (!has_line(page, expected_lines[i]))
			fail_msg("missing line: %s", expected_lines[i]);
	/* No latency or expiry is made up for backends without them. */
	assert_null(strstr(page, "tether_backend_check_latency_seconds{pool=\"web\""));
	assert_null(strstr(page, "tether_backend_certificate_expiry_days{pool=\"cp\",backend=\"be3\"}"));
	free(page);
	json_decref(stats);
}

/*
 * Conventions, checked line by line: every sample's family has one HELP and
 * one TYPE line before it; a counter's samples end in _total, a gauge's do
 * not; every name starts with tether_; no series appears twice.
 */
static void
test_render_conventions(void **state)
{
	json_t *stats = json_load_file(STATS_FIXTURE, 0, NULL);
	char *page, *save, *line;
	char family[128] = "", type[16] = "";
	char **seen = calloc(4096, sizeof(char *));
	unsigned seen_count = 0, samples = 0;

	(void)state;
	assert_non_null(stats);
	page = render(stats);
	for (line = strtok_r(page, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		if (strncmp(line, "# HELP ", 7) == 0)
			continue;
		if (sscanf(line, "# TYPE %127s %15s", family, type) == 2) {
			for (unsigned i = 0; i < seen_count; i++)
				if (strcmp(seen[i], family) == 0)
					fail_msg("TYPE twice for %s", family);
			seen[seen_count++] = strdup(family);
			continue;
		}
		char name[128];
		size_t name_length = strcspn(line, "{ ");
		assert_true(name_length < sizeof(name));
		memcpy(name, line, name_length);
		name[name_length] = '\0';
		if (strcmp(name, family) != 0)
			fail_msg("sample %s outside its family %s", line, family);
		if (strncmp(name, "tether_", 7) != 0)
			fail_msg("%s does not start with tether_", name);
		bool total = name_length > 6 && strcmp(name + name_length - 6, "_total") == 0;
		if (strcmp(type, "counter") == 0 && !total)
			fail_msg("counter %s does not end in _total", name);
		if (strcmp(type, "gauge") == 0 && total)
			fail_msg("gauge %s ends in _total", name);
		const char *value = strrchr(line, ' ');
		char *end;
		assert_non_null(value);
		strtod(value + 1, &end);
		if (*end)
			fail_msg("bad value in %s", line);
		samples++;
	}
	assert_true(samples > 100);
	for (unsigned i = 0; i < seen_count; i++)
		free(seen[i]);
	free(seen);
	free(page);
	json_decref(stats);
}

/* The dataplane down: tether_dataplane_up 0 and the health metrics only. */
static void
test_render_without_dataplane(void **state)
{
	char *page = render(NULL);

	(void)state;
	assert_true(has_line(page, "tether_dataplane_up 0"));
	assert_true(has_line(page, "tether_backend_up{pool=\"cp\",backend=\"be3\"} 0"));
	assert_null(strstr(page, "tether_service_new_flows_total"));
	assert_null(strstr(page, "tether_drops_total"));
	free(page);
}

/* Label values are escaped (\\, \", newline) so a page always parses. */
static void
test_render_escapes_labels(void **state)
{
	const struct metrics_backend odd = { .pool = "a\"b", .name = "c\\d\ne", .state = "up", .health = 1,
					     .weight = 1, .check_latency_s = -1 };
	struct metrics_snapshot snapshot = { .backends = &odd, .backend_count = 1 };
	char *page = metrics_render(&snapshot);

	(void)state;
	assert_true(has_line(page, "tether_backend_up{pool=\"a\\\"b\",backend=\"c\\\\d\\ne\"} 1"));
	free(page);
}

struct request_case {
	const char *description;
	const char *request;
	int status;             /* 0: incomplete */
	bool head_only;
};

static const struct request_case request_cases[] = {
	{ "curl's request", "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:9469\r\nUser-Agent: curl\r\nAccept: */*\r\n\r\n", 200, false },
	{ "HTTP/1.0 with bare newlines", "GET /metrics HTTP/1.0\n\n", 200, false },
	{ "a query string is ignored", "GET /metrics?name[]=x HTTP/1.1\r\n\r\n", 200, false },
	{ "HEAD", "HEAD /metrics HTTP/1.1\r\n\r\n", 200, true },
	{ "another path", "GET / HTTP/1.1\r\n\r\n", 404, false },
	{ "a longer path", "GET /metricsx HTTP/1.1\r\n\r\n", 404, false },
	{ "POST", "POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n", 405, false },
	{ "DELETE", "DELETE /metrics HTTP/1.1\r\n\r\n", 405, false },
	{ "not HTTP", "hello\r\n\r\n", 400, false },
	{ "no version", "GET /metrics\r\n\r\n", 400, false },
	{ "a relative path", "GET metrics HTTP/1.1\r\n\r\n", 400, false },
	{ "head not finished", "GET /metrics HTTP/1.1\r\nHost: x\r\n", 0, false },
	{ "nothing yet", "", 0, false },
};

static void
test_parse_request(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(request_cases) / sizeof(request_cases[0]); i++) {
		const struct request_case *c = &request_cases[i];
		bool head_only = false;
		int status = metrics_parse_request(c->request, strlen(c->request), &head_only);
		if (status != c->status || head_only != c->head_only)
			fail_msg("%s: got %d%s, wanted %d%s", c->description, status, head_only ? " (head)" : "",
				 c->status, c->head_only ? " (head)" : "");
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_render_from_canned_stats),
		cmocka_unit_test(test_render_conventions),
		cmocka_unit_test(test_render_without_dataplane),
		cmocka_unit_test(test_render_escapes_labels),
		cmocka_unit_test(test_parse_request),
	};
	log_set_level(LOG_WARNING);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
