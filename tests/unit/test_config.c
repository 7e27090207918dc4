/*
 * test_config.c: the config loader accepts every documented deployment and
 * refuses every broken file, naming the JSON path of each mistake.
 *
 * The cases are data, in the layout of jansson's own suite:
 *   fixtures/config/invalid/<case>/input.json   a document with one mistake
 *   fixtures/config/invalid/<case>/error        line 1: the JSON path expected;
 *                                               line 2 (optional): a substring
 *                                               of the message
 *   fixtures/config/invalid/<case>/description  one line, shown on failure
 *   fixtures/config/valid/<case>/input.json     must parse
 *   fixtures/config/multiple/                   several mistakes in one file
 * plus the shipped examples in ../config/.  Paths are relative to tests/,
 * where ctest runs this binary.  Adding a case is adding a directory.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"

#define FIXTURES     "fixtures/config"
#define CASES_MAX    256
#define FILE_PATH_MAX 512

/* The shipped examples: docs/configuration.md explains each. */
static const char *const example_files[] = {
	"../config/lab.json",
	"../config/single-server.json",
	"../config/multi-server.json",
};

/*
 * Behaviours the brief requires the invalid fixtures to cover; listing them
 * keeps a deleted directory from silently dropping a guarantee.
 */
static const char *const required_invalid_cases[] = {
	"wrong-type-port-string", "wrong-type-services-object", "unknown-key-top",
	"unknown-key-nested", "unknown-key-backend", "duplicate-vip-port",
	"missing-pool", "bad-cidr-length", "host-bits-set", "port-70000",
	"capacity-1e30", "integer-25-digits", "truncated-json", "empty-file",
	"duplicate-keys", "maglev-not-prime", "health-timeout-not-below-interval",
	"weight-5000", "gateway-outside-prefix", "fallback-on-source-ip",
	"duplicate-backend-names", "workers-9", "workers-one-arm",
};

/* ------------------------------------------------------------------------ */
/* Helpers                                                                   */

static uint32_t
ip(unsigned a, unsigned b, unsigned c, unsigned d)
{
	return (uint32_t)a << 24 | (uint32_t)b << 16 | (uint32_t)c << 8 | d;
}

/* snprintf into a FILE_PATH_MAX buffer (a helper so that the compiler's
 * truncation guesses about directory names stay out of the way). */
static void path_format(char *out, const char *format, ...)
	__attribute__((format(printf, 2, 3)));

static void
path_format(char *out, const char *format, ...)
{
	va_list args;

	va_start(args, format);
	vsnprintf(out, FILE_PATH_MAX, format, args);
	va_end(args);
}

/* Read a small text file into `buffer`; "" when it does not exist. */
static void
read_small_file(const char *path, char *buffer, size_t size)
{
	FILE *file = fopen(path, "r");
	size_t n = 0;

	if (file != NULL) {
		n = fread(buffer, 1, size - 1, file);
		fclose(file);
	}
	buffer[n] = '\0';
}

/* Split off the first line of `text` (its '\n' removed); returns the rest. */
static char *
next_line(char *text)
{
	char *newline = strchr(text, '\n');

	if (newline == NULL)
		return text + strlen(text);
	*newline = '\0';
	return newline + 1;
}

static int
select_case(const struct dirent *entry)
{
	return entry->d_name[0] != '.';
}

/* The case directories under `directory`, sorted; returns their count. */
static int
list_cases(const char *directory, char names[][128], int max)
{
	struct dirent **entries;
	int count = scandir(directory, &entries, select_case, alphasort);

	assert_true(count >= 0);
	for (int i = 0; i < count; i++) {
		if (i < max) {
			size_t length = strnlen(entries[i]->d_name, 127);

			memcpy(names[i], entries[i]->d_name, length);
			names[i][length] = '\0';
		}
		free(entries[i]);
	}
	free(entries);
	return count < max ? count : max;
}

static void
print_errors(const struct config_errors *errors)
{
	unsigned stored = errors->count < CONFIG_ERRORS_MAX ? errors->count : CONFIG_ERRORS_MAX;

	for (unsigned i = 0; i < stored; i++)
		print_message("    %s: %s\n", errors->errors[i].path, errors->errors[i].message);
}

/* True when some error sits at `path` and, if `substring` is not empty,
 * its message contains it. */
static bool
has_error(const struct config_errors *errors, const char *path, const char *substring)
{
	unsigned stored = errors->count < CONFIG_ERRORS_MAX ? errors->count : CONFIG_ERRORS_MAX;

	for (unsigned i = 0; i < stored; i++)
		if (strcmp(errors->errors[i].path, path) == 0 &&
		    strstr(errors->errors[i].message, substring) != NULL)
			return true;
	return false;
}

static bool
config_is_empty(const struct config *config)
{
	static const struct config empty;

	return memcmp(config, &empty, sizeof empty) == 0;
}

/* Load a file that must be valid; fails the test with its errors otherwise. */
static void
load_valid(const char *file, struct config *config)
{
	struct config_errors errors;
	int result = config_load_file(file, config, &errors);

	if (result != 0 || errors.count != 0) {
		print_message("%s was refused:\n", file);
		print_errors(&errors);
	}
	assert_int_equal(result, 0);
	assert_int_equal(errors.count, 0);
}

static const struct config_service *
find_service(const struct config *config, const char *name)
{
	for (unsigned i = 0; i < config->service_count; i++)
		if (strcmp(config->services[i].name, name) == 0)
			return &config->services[i];
	fail_msg("no service named '%s'", name);
	return NULL;
}

static const struct config_pool *
find_pool(const struct config *config, const char *name)
{
	int index = config_pool_index(config, name);

	if (index < 0)
		fail_msg("no pool named '%s'", name);
	return &config->pools[index];
}

/* ------------------------------------------------------------------------ */
/* Fixture tables                                                            */

/* Every invalid fixture is refused, with an error at the path it names,
 * and leaves the output config empty. */
static void
test_invalid_fixtures_are_refused_at_their_path(void **state)
{
	static char names[CASES_MAX][128];
	int count = list_cases(FIXTURES "/invalid", names, CASES_MAX);
	int failures = 0;

	(void)state;
	for (int i = 0; i < count; i++) {
		char file[FILE_PATH_MAX], expected[512], description[256];
		struct config config;
		struct config_errors errors;
		char *path = expected, *substring;
		int result;

		path_format(file, FIXTURES "/invalid/%s/error", names[i]);
		read_small_file(file, expected, sizeof expected);
		substring = next_line(path);
		next_line(substring);
		path_format(file, FIXTURES "/invalid/%s/description", names[i]);
		read_small_file(file, description, sizeof description);
		next_line(description);
		path_format(file, FIXTURES "/invalid/%s/input.json", names[i]);
		result = config_load_file(file, &config, &errors);

		if (path[0] == '\0' || result != -EINVAL || !config_is_empty(&config) ||
		    !has_error(&errors, path, substring)) {
			print_message("FAIL invalid/%s (%s): want %s \"%s\", got %d with:\n",
				      names[i], description, path, substring, result);
			print_errors(&errors);
			failures++;
		}
		config_free(&config);
	}
	print_message("%d invalid fixtures checked\n", count);
	assert_int_equal(failures, 0);
	assert_true(count >= 22);
}

/* The behaviours the brief lists each keep a fixture. */
static void
test_required_invalid_cases_exist(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof required_invalid_cases / sizeof required_invalid_cases[0]; i++) {
		char file[FILE_PATH_MAX];

		path_format(file, FIXTURES "/invalid/%s/error", required_invalid_cases[i]);
		if (access(file, R_OK) != 0)
			fail_msg("missing fixture %s", file);
	}
}

/* Every valid fixture and every shipped example parses without error. */
static void
test_valid_fixtures_and_examples_parse(void **state)
{
	static char names[CASES_MAX][128];
	int count = list_cases(FIXTURES "/valid", names, CASES_MAX);

	(void)state;
	for (int i = 0; i < count; i++) {
		char file[FILE_PATH_MAX];
		struct config config;

		path_format(file, FIXTURES "/valid/%s/input.json", names[i]);
		load_valid(file, &config);
		assert_true(config.service_count > 0);
		config_free(&config);
	}
	for (size_t i = 0; i < sizeof example_files / sizeof example_files[0]; i++) {
		struct config config;

		load_valid(example_files[i], &config);
		config_free(&config);
	}
	print_message("%d valid fixtures and %zu examples parsed\n", count,
		      sizeof example_files / sizeof example_files[0]);
	assert_true(count >= 5);
}

/* One pass reports every independent mistake, each at its own path. */
static void
test_multiple_errors_are_all_reported(void **state)
{
	char expected[1024], *line, *rest;
	struct config config;
	struct config_errors errors;
	unsigned paths = 0;

	(void)state;
	read_small_file(FIXTURES "/multiple/errors", expected, sizeof expected);
	assert_int_equal(config_load_file(FIXTURES "/multiple/input.json", &config, &errors),
			 -EINVAL);
	for (line = expected; *line != '\0'; line = rest, paths++) {
		rest = next_line(line);
		if (!has_error(&errors, line, "")) {
			print_errors(&errors);
			fail_msg("no error at %s", line);
		}
	}
	assert_true(paths >= 3);
	assert_true(errors.count >= paths);
}

/* Past CONFIG_ERRORS_MAX errors are still counted, the first ones kept. */
static void
test_error_count_continues_past_the_cap(void **state)
{
	static const char head[] =
		"{\"dataplane\": {\"ports\": {\"public\": {\"device\": \"d\","
		" \"address\": \"198.51.100.2/25\"}}},"
		" \"pools\": {\"p\": {\"backends\": [{\"name\": \"b\", \"address\": \"198.51.100.131\"}]}},"
		" \"services\": [";
	size_t size = 100 * 96 + sizeof head, used;
	char *text = malloc(size);
	struct config config;
	struct config_errors errors;

	(void)state;
	assert_non_null(text);
	used = (size_t)snprintf(text, size, "%s", head);
	for (unsigned i = 0; i < 100; i++)
		used += (size_t)snprintf(text + used, size - used,
			"%s{\"name\": \"s%u\", \"vip\": \"192.0.2.%u\", \"port\": 0, \"pool\": \"p\"}",
			i == 0 ? "" : ", ", i, i + 1);
	used += (size_t)snprintf(text + used, size - used, "]}");
	assert_int_equal(config_parse(text, used, &config, &errors), -EINVAL);
	assert_int_equal(errors.count, 100);
	assert_string_equal(errors.errors[0].path, "$.services[0].port");
	assert_string_equal(errors.errors[CONFIG_ERRORS_MAX - 1].path, "$.services[63].port");
	assert_true(config_is_empty(&config));
	free(text);
}

/* ------------------------------------------------------------------------ */
/* Parsed values                                                             */

/* With only the required keys, every documented default applies and the
 * missing private port means one-arm mode. */
static void
test_defaults_apply_in_one_arm_mode(void **state)
{
	struct config config;
	const struct config_dataplane *dataplane = &config.dataplane;
	const struct config_service *service;
	const struct config_backend *backend;
	const struct config_health *health;

	(void)state;
	load_valid(FIXTURES "/valid/minimal-one-arm/input.json", &config);
	assert_true(dataplane->public_port.present);
	assert_false(dataplane->private_port.present);
	assert_string_equal(dataplane->public_port.device, "net_af_packet0,iface=tl-lb-pub");
	assert_int_equal(dataplane->public_port.address, ip(198, 51, 100, 2));
	assert_int_equal(dataplane->public_port.prefix_length, 24);
	assert_int_equal(dataplane->public_port.gateway, 0);
	assert_int_equal(dataplane->workers, 1);
	assert_int_equal(dataplane->flow_capacity, 65536);
	assert_int_equal(dataplane->tcp_syn_timeout_s, 30);
	assert_int_equal(dataplane->tcp_established_timeout_s, 900);
	assert_int_equal(dataplane->tcp_fin_timeout_s, 60);
	assert_int_equal(dataplane->tcp_close_timeout_s, 10);
	assert_int_equal(dataplane->udp_timeout_s, 300);
	assert_int_equal(dataplane->session_capacity, 65536);
	assert_int_equal(dataplane->maglev_table_size, 65537);
	assert_string_equal(config.control.socket, "/run/tether/control.sock");
	assert_string_equal(config.control.metrics, "127.0.0.1:9469");

	assert_int_equal(config.service_count, 1);
	service = &config.services[0];
	assert_string_equal(service->name, "web");
	assert_int_equal(service->vip, ip(192, 0, 2, 10));
	assert_int_equal(service->port, 443);
	assert_int_equal(service->protocol, CONFIG_PROTO_TCP);
	assert_int_equal(service->pool, 0);
	assert_int_equal(service->target_port, 0);
	assert_int_equal(service->persistence.mode, CONFIG_PERSIST_NONE);
	assert_int_equal(service->persistence.fallback, CONFIG_FALLBACK_SOURCE_IP);
	assert_int_equal(service->persistence.timeout_s, 3600);
	assert_int_equal(service->persistence.source_prefix_length, 32);
	assert_int_equal(service->allow_count, 0);

	assert_int_equal(config.pool_count, 1);
	assert_string_equal(config.pools[0].name, "web");
	assert_int_equal(config.pools[0].backend_count, 1);
	backend = &config.pools[0].backends[0];
	assert_string_equal(backend->name, "be1");
	assert_int_equal(backend->address, ip(198, 51, 100, 131));
	assert_int_equal(backend->port, 0);
	assert_int_equal(backend->weight, 1);
	assert_true(backend->enabled);
	assert_string_equal(backend->fqdn, "");
	health = &config.pools[0].health;
	assert_int_equal(health->type, CONFIG_HEALTH_NONE);
	assert_int_equal(health->port, 0);
	assert_int_equal(health->interval_ms, 1000);
	assert_int_equal(health->timeout_ms, 500);
	assert_int_equal(health->rise, 2);
	assert_int_equal(health->fall, 3);
	assert_string_equal(health->ca, "");
	assert_string_equal(health->path, "/");
	assert_int_equal(health->expect_status, 200);
	config_free(&config);
}

/* Every key of the schema lands in its field. */
static void
test_every_key_is_read(void **state)
{
	struct config config;
	const struct config_dataplane *dataplane = &config.dataplane;
	const struct config_service *service;
	const struct config_pool *pool;

	(void)state;
	load_valid(FIXTURES "/valid/every-key/input.json", &config);
	assert_string_equal(dataplane->public_port.device, "0000:3b:00.0");
	assert_int_equal(dataplane->public_port.address, ip(203, 0, 113, 2));
	assert_int_equal(dataplane->public_port.prefix_length, 28);
	assert_int_equal(dataplane->public_port.gateway, ip(203, 0, 113, 1));
	assert_true(dataplane->private_port.present);
	assert_string_equal(dataplane->private_port.device, "0000:3b:00.1");
	assert_int_equal(dataplane->private_port.gateway, ip(198, 51, 100, 254));
	assert_int_equal(dataplane->flow_capacity, 1048576);
	assert_int_equal(dataplane->tcp_syn_timeout_s, 5);
	assert_int_equal(dataplane->tcp_established_timeout_s, 7200);
	assert_int_equal(dataplane->tcp_fin_timeout_s, 30);
	assert_int_equal(dataplane->tcp_close_timeout_s, 2);
	assert_int_equal(dataplane->udp_timeout_s, 60);
	assert_int_equal(dataplane->session_capacity, 2097152);
	assert_int_equal(dataplane->maglev_table_size, 131071);
	assert_string_equal(config.control.socket, "/run/tether-test/control.sock");
	assert_string_equal(config.control.metrics, "0.0.0.0:9100");

	service = find_service(&config, "cp");
	assert_int_equal(service->target_port, 8443);
	assert_int_equal(service->persistence.mode, CONFIG_PERSIST_SSL_SESSION);
	assert_int_equal(service->persistence.fallback, CONFIG_FALLBACK_SOURCE_IP_SNI);
	assert_int_equal(service->persistence.timeout_s, 7200);
	assert_int_equal(service->persistence.source_prefix_length, 24);
	assert_int_equal(service->allow_count, 1);

	pool = find_pool(&config, "cp");
	assert_int_equal(pool->backends[0].port, 8443);
	assert_int_equal(pool->backends[0].weight, 10);
	assert_string_equal(pool->backends[0].fqdn, "cp1.assist.example");
	assert_int_equal(pool->backends[1].weight, 0);
	assert_false(pool->backends[1].enabled);
	assert_int_equal(pool->health.type, CONFIG_HEALTH_HTTPS);
	assert_int_equal(pool->health.interval_ms, 2000);
	assert_int_equal(pool->health.timeout_ms, 1500);
	assert_int_equal(pool->health.rise, 1);
	assert_int_equal(pool->health.fall, 5);
	assert_string_equal(pool->health.ca, "/etc/tether/ca.pem");
	assert_string_equal(pool->health.path, "/healthz?full=1");
	assert_int_equal(pool->health.expect_status, 204);
	config_free(&config);
}

/*
 * Port translation is stored as written: the dataplane sends to
 * service.target_port if set, else backend.port if set, else service.port
 * (docs/configuration.md); 0 means "not set".
 */
static void
test_port_translation_is_kept(void **state)
{
	struct config config;
	const struct config_pool *ported;

	(void)state;
	load_valid(FIXTURES "/valid/port-translation/input.json", &config);
	assert_int_equal(find_service(&config, "by-service")->port, 443);
	assert_int_equal(find_service(&config, "by-service")->target_port, 8443);
	assert_int_equal(find_service(&config, "by-backend")->target_port, 0);
	assert_int_equal(find_service(&config, "unchanged")->target_port, 0);
	assert_int_equal(find_pool(&config, "plain")->backends[0].port, 0);
	ported = find_pool(&config, "ported");
	assert_int_equal(ported->backends[0].port, 9443);
	assert_int_equal(ported->backends[1].port, 9444);
	/* One backend name may appear in several pools. */
	assert_string_equal(ported->backends[0].name, "be3");
	config_free(&config);
}

/* allow_from keeps each prefix; a bare address is a /32. */
static void
test_allow_from_prefixes(void **state)
{
	struct config config;
	const struct config_service *service;

	(void)state;
	load_valid(FIXTURES "/valid/allow-from/input.json", &config);
	service = &config.services[0];
	assert_int_equal(service->allow_count, 4);
	assert_int_equal(service->allow_from[0].address, ip(203, 0, 113, 0));
	assert_int_equal(service->allow_from[0].length, 26);
	assert_int_equal(service->allow_from[1].address, ip(192, 0, 2, 128));
	assert_int_equal(service->allow_from[1].length, 25);
	assert_int_equal(service->allow_from[2].address, ip(203, 0, 113, 77));
	assert_int_equal(service->allow_from[2].length, 32);
	assert_int_equal(service->allow_from[3].address, 0);
	assert_int_equal(service->allow_from[3].length, 0);
	config_free(&config);
}

/* Pools keep document order; a service points at its pool by index. */
static void
test_pools_keep_document_order(void **state)
{
	struct config config;

	(void)state;
	load_valid(FIXTURES "/valid/names-and-unused-pool/input.json", &config);
	assert_int_equal(config.pool_count, 2);
	assert_int_equal(config_pool_index(&config, "spare"), 0);
	assert_int_equal(config_pool_index(&config, "cp.v2"), 1);
	assert_int_equal(config_pool_index(&config, "nope"), -1);
	assert_int_equal(config_pool_index(&config, ""), -1);
	assert_int_equal(config.services[0].pool, 1);
	assert_string_equal(config.services[0].name, "cp_v2.shared-443");
	config_free(&config);
}

/* The protocol is part of a service's identity: TCP and UDP share a port. */
static void
test_udp_and_tcp_share_a_port(void **state)
{
	struct config config;

	(void)state;
	load_valid(FIXTURES "/valid/udp-and-tcp-same-port/input.json", &config);
	assert_int_equal(find_service(&config, "dns-tcp")->protocol, CONFIG_PROTO_TCP);
	assert_int_equal(find_service(&config, "dns-udp")->protocol, CONFIG_PROTO_UDP);
	assert_int_equal(find_service(&config, "dns-udp")->persistence.timeout_s, 30);
	config_free(&config);
}

static void
test_ssl_session_fallbacks(void **state)
{
	struct config config;

	(void)state;
	load_valid(FIXTURES "/valid/ssl-session-fallbacks/input.json", &config);
	assert_int_equal(find_service(&config, "default-fallback")->persistence.fallback,
			 CONFIG_FALLBACK_SOURCE_IP);
	assert_int_equal(find_service(&config, "sni-fallback")->persistence.fallback,
			 CONFIG_FALLBACK_SOURCE_IP_SNI);
	assert_int_equal(find_service(&config, "no-fallback")->persistence.fallback,
			 CONFIG_FALLBACK_NONE);
	config_free(&config);
}

/* The lab config: what the end-to-end tests and the demo rely on. */
static void
test_lab_config(void **state)
{
	struct config config;
	const struct config_service *service;
	const struct config_pool *pool;

	(void)state;
	load_valid("../config/lab.json", &config);
	assert_int_equal(config.dataplane.public_port.address, ip(198, 51, 100, 2));
	assert_int_equal(config.dataplane.public_port.prefix_length, 25);
	assert_int_equal(config.dataplane.public_port.gateway, ip(198, 51, 100, 1));
	assert_true(config.dataplane.private_port.present);
	assert_int_equal(config.dataplane.private_port.address, ip(198, 51, 100, 129));
	assert_int_equal(config.dataplane.flow_capacity, 65536);
	assert_int_equal(config.service_count, 7);

	service = find_service(&config, "portal-https");
	assert_int_equal(service->vip, ip(192, 0, 2, 10));
	assert_int_equal(service->persistence.mode, CONFIG_PERSIST_SSL_SESSION);
	assert_int_equal(service->persistence.fallback, CONFIG_FALLBACK_SOURCE_IP);
	assert_int_equal(service->allow_count, 1);
	assert_int_equal(service->allow_from[0].address, ip(203, 0, 113, 0));
	assert_int_equal(service->allow_from[0].length, 26);
	assert_int_equal(find_service(&config, "portal-http")->persistence.timeout_s, 600);
	assert_int_equal(find_service(&config, "cp-shared")->persistence.mode,
			 CONFIG_PERSIST_SOURCE_IP);

	service = find_service(&config, "cp-single-8443");
	assert_int_equal(service->vip, ip(192, 0, 2, 23));
	assert_int_equal(service->port, 443);
	assert_int_equal(service->target_port, 8443);
	pool = &config.pools[service->pool];
	assert_string_equal(pool->name, "cp3");
	assert_int_equal(pool->backends[0].port, 8443);

	pool = find_pool(&config, "cp");
	assert_int_equal(pool->backend_count, 3);
	assert_int_equal(pool->health.type, CONFIG_HEALTH_TLS);
	assert_string_equal(pool->health.ca, "/run/tether-lab/ca.pem");
	assert_string_equal(pool->backends[2].fqdn, "be3.lab.example");
	config_free(&config);
}

/* REQUIREMENTS.md's two worked deployments. */
static void
test_deployment_examples(void **state)
{
	struct config config;
	const struct config_pool *pool;

	(void)state;
	/* Single server: one IP, 443 and 80 to the portal, 8443 to CP. */
	load_valid("../config/single-server.json", &config);
	assert_int_equal(config.service_count, 3);
	for (unsigned i = 0; i < config.service_count; i++)
		assert_int_equal(config.services[i].vip, ip(192, 0, 2, 10));
	assert_int_equal(find_service(&config, "cp")->port, 8443);
	assert_int_equal(find_pool(&config, "cp")->backends[0].port, 8443);
	assert_int_equal(find_service(&config, "cp")->persistence.mode,
			 CONFIG_PERSIST_SSL_SESSION);
	config_free(&config);

	/* Multiple servers: a portal VIP, one VIP per CP server, a shared CP VIP. */
	load_valid("../config/multi-server.json", &config);
	assert_int_equal(find_service(&config, "portal-http")->persistence.mode,
			 CONFIG_PERSIST_SOURCE_IP);
	pool = find_pool(&config, "cp");
	assert_int_equal(pool->backend_count, 3);
	for (unsigned i = 0; i < config.service_count; i++) {
		const struct config_service *service = &config.services[i];

		if (strncmp(service->name, "cp", 2) == 0)
			assert_int_equal(service->persistence.mode, CONFIG_PERSIST_SSL_SESSION);
	}
	config_free(&config);
}

/* ------------------------------------------------------------------------ */
/* The API around the parser                                                 */

/*
 * Strict dotted quads.  Decisions: a leading zero is refused (inet_aton
 * reads "010" as octal 8; neither reading is worth the surprise), and so is
 * any space, sign, missing or extra octet.
 */
static void
test_ipv4_parser(void **state)
{
	static const struct {
		const char *text;
		int result;
		uint32_t address;
	} cases[] = {
		{ "192.0.2.10", 0, 0xc000020a },
		{ "0.0.0.0", 0, 0 },
		{ "255.255.255.255", 0, 0xffffffff },
		{ "1.2.3.0", 0, 0x01020300 },
		{ "1.2.3", -EINVAL, 0 },
		{ "1.2.3.4.5", -EINVAL, 0 },
		{ "256.1.1.1", -EINVAL, 0 },
		{ "1.2.3.256", -EINVAL, 0 },
		{ "1.2.3.4 ", -EINVAL, 0 },
		{ " 1.2.3.4", -EINVAL, 0 },
		{ "01.2.3.4", -EINVAL, 0 },
		{ "1.2.3.04", -EINVAL, 0 },
		{ "1.2.3.0004", -EINVAL, 0 },
		{ "+1.2.3.4", -EINVAL, 0 },
		{ "-1.2.3.4", -EINVAL, 0 },
		{ "1..2.3", -EINVAL, 0 },
		{ "1.2.3.", -EINVAL, 0 },
		{ ".1.2.3", -EINVAL, 0 },
		{ "0x1.2.3.4", -EINVAL, 0 },
		{ "1.2.3.4/32", -EINVAL, 0 },
		{ "", -EINVAL, 0 },
	};

	(void)state;
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		uint32_t address = 0x5a5a5a5a;
		int result = config_parse_ipv4(cases[i].text, &address);

		if (result != cases[i].result)
			fail_msg("config_parse_ipv4(\"%s\") = %d, want %d", cases[i].text,
				 result, cases[i].result);
		if (result == 0)
			assert_int_equal(address, cases[i].address);
		else
			assert_int_equal(address, 0x5a5a5a5a);
	}
	assert_int_equal(config_parse_ipv4(NULL, &(uint32_t){ 0 }), -EINVAL);
}

/* Prefixes: length 0..32 without leading zeros, no host bits; a bare
 * address is a /32. */
static void
test_prefix_parser(void **state)
{
	static const struct {
		const char *text;
		int result;
		uint32_t address;
		uint8_t length;
	} cases[] = {
		{ "203.0.113.0/26", 0, 0xcb007100, 26 },
		{ "203.0.113.64/26", 0, 0xcb007140, 26 },
		{ "0.0.0.0/0", 0, 0, 0 },
		{ "203.0.113.7/32", 0, 0xcb007107, 32 },
		{ "203.0.113.7", 0, 0xcb007107, 32 },
		{ "203.0.113.1/26", -EINVAL, 0, 0 },     /* host bits set */
		{ "1.0.0.0/0", -EINVAL, 0, 0 },
		{ "203.0.113.0/33", -EINVAL, 0, 0 },
		{ "203.0.113.0/026", -EINVAL, 0, 0 },
		{ "203.0.113.0/", -EINVAL, 0, 0 },
		{ "203.0.113.0/-1", -EINVAL, 0, 0 },
		{ "203.0.113.0/ 24", -EINVAL, 0, 0 },
		{ "203.0.113.0/24 ", -EINVAL, 0, 0 },
		{ "203.0.113/24", -EINVAL, 0, 0 },
		{ "/24", -EINVAL, 0, 0 },
	};

	(void)state;
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct config_prefix prefix = { 0 };
		int result = config_parse_prefix(cases[i].text, &prefix);

		if (result != cases[i].result)
			fail_msg("config_parse_prefix(\"%s\") = %d, want %d", cases[i].text,
				 result, cases[i].result);
		if (result == 0) {
			assert_int_equal(prefix.address, cases[i].address);
			assert_int_equal(prefix.length, cases[i].length);
		}
	}
}

static void
test_format_and_names(void **state)
{
	char buffer[16];

	(void)state;
	assert_string_equal(config_format_ipv4(ip(192, 0, 2, 10), buffer), "192.0.2.10");
	assert_string_equal(config_format_ipv4(0xffffffff, buffer), "255.255.255.255");
	assert_string_equal(config_format_ipv4(0, buffer), "0.0.0.0");
	assert_string_equal(config_persistence_mode_name(CONFIG_PERSIST_NONE), "none");
	assert_string_equal(config_persistence_mode_name(CONFIG_PERSIST_SOURCE_IP), "source-ip");
	assert_string_equal(config_persistence_mode_name(CONFIG_PERSIST_SSL_SESSION),
			    "ssl-session");
	assert_string_equal(config_persistence_mode_name((enum config_persistence_mode)7),
			    "unknown");
}

/* config_parse reads exactly `length` bytes: the buffer need not end in NUL
 * and what follows it is not part of the document. */
static void
test_parse_honours_length(void **state)
{
	static const char text[] =
		"{\"dataplane\": {\"ports\": {\"public\": {\"device\": \"d\","
		" \"address\": \"198.51.100.2/25\"}}},"
		" \"pools\": {\"p\": {\"backends\": [{\"name\": \"b\", \"address\": \"198.51.100.131\"}]}},"
		" \"services\": [{\"name\": \"s\", \"vip\": \"192.0.2.1\", \"port\": 1, \"pool\": \"p\"}]}"
		"GARBAGE";
	struct config config;
	struct config_errors errors;

	(void)state;
	assert_int_equal(config_parse(text, sizeof text - 1 - 7, &config, &errors), 0);
	assert_int_equal(config.service_count, 1);
	config_free(&config);
	assert_int_equal(config_parse(text, sizeof text - 1, &config, &errors), -EINVAL);
	assert_string_equal(errors.errors[0].path, "$");
	/* Errors may be NULL when only the verdict matters. */
	assert_int_equal(config_parse(text, sizeof text - 1, &config, NULL), -EINVAL);
	assert_int_equal(config_parse(NULL, 0, &config, &errors), -EINVAL);
}

/* A file that cannot be read is one error at "$" naming the file and why. */
static void
test_load_file_errors_name_the_file(void **state)
{
	char big[] = "/tmp/test_config_big_XXXXXX";
	struct config config;
	struct config_errors errors;
	FILE *file;
	int fd;

	(void)state;
	assert_int_equal(config_load_file("fixtures/config/no-such-file.json", &config,
					  &errors), -EINVAL);
	assert_int_equal(errors.count, 1);
	assert_string_equal(errors.errors[0].path, "$");
	assert_non_null(strstr(errors.errors[0].message, "no-such-file.json"));
	assert_non_null(strstr(errors.errors[0].message, strerror(ENOENT)));
	assert_true(config_is_empty(&config));

	assert_int_equal(config_load_file("fixtures/config", &config, &errors), -EINVAL);
	assert_non_null(strstr(errors.errors[0].message, strerror(EISDIR)));

	/* Past 4 MiB the file is refused before jansson sees it. */
	fd = mkstemp(big);
	assert_true(fd >= 0);
	file = fdopen(fd, "w");
	assert_non_null(file);
	for (unsigned i = 0; i < (4u << 20) / 64 + 1; i++)
		fputs("                                                               \n", file);
	fclose(file);
	assert_int_equal(config_load_file(big, &config, &errors), -EINVAL);
	assert_non_null(strstr(errors.errors[0].message, "larger than 4 MiB"));
	unlink(big);
}

/* config_free is safe on a zeroed config and twice on the same one. */
static void
test_free_is_idempotent(void **state)
{
	struct config config = { 0 };

	(void)state;
	config_free(&config);
	load_valid("../config/lab.json", &config);
	config_free(&config);
	assert_true(config_is_empty(&config));
	config_free(&config);
	config_free(NULL);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_invalid_fixtures_are_refused_at_their_path),
		cmocka_unit_test(test_required_invalid_cases_exist),
		cmocka_unit_test(test_valid_fixtures_and_examples_parse),
		cmocka_unit_test(test_multiple_errors_are_all_reported),
		cmocka_unit_test(test_error_count_continues_past_the_cap),
		cmocka_unit_test(test_defaults_apply_in_one_arm_mode),
		cmocka_unit_test(test_every_key_is_read),
		cmocka_unit_test(test_port_translation_is_kept),
		cmocka_unit_test(test_allow_from_prefixes),
		cmocka_unit_test(test_pools_keep_document_order),
		cmocka_unit_test(test_udp_and_tcp_share_a_port),
		cmocka_unit_test(test_ssl_session_fallbacks),
		cmocka_unit_test(test_lab_config),
		cmocka_unit_test(test_deployment_examples),
		cmocka_unit_test(test_ipv4_parser),
		cmocka_unit_test(test_prefix_parser),
		cmocka_unit_test(test_format_and_names),
		cmocka_unit_test(test_parse_honours_length),
		cmocka_unit_test(test_load_file_errors_name_the_file),
		cmocka_unit_test(test_free_is_idempotent),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
