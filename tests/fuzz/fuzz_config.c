/*
 * fuzz_config.c: libFuzzer harness for the JSON config loader
 * (control/config.h).  Both daemons load the same file, and tether-control
 * reloads it on SIGHUP while forwarding: a document that crashes or leaks the
 * loader takes the balancer down on a reload, so config_parse() must turn any
 * bytes into either a config or a list of errors.
 *
 * The input is the document itself (jansson's own fuzzer does the same).  The
 * buffer is an exact-size heap copy, not NUL-terminated, as config_parse()
 * promises to accept.  Checked beyond "no crash, no leak":
 *  - the result is one or the other: 0 with no errors, or -EINVAL with at
 *    least one error, each with a JSON path starting at "$" and a message,
 *    both NUL-terminated inside their arrays;
 *  - on success, the model is consistent: every service's pool exists, pools
 *    are found by name, counts within their limits, names NUL-terminated;
 *  - parsing the same bytes twice gives the same verdict (no hidden state);
 *  - config_free() twice is safe, as config.h promises.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "fuzz_check.h"

static FILE *null_output;

static void
check_errors(const struct config_errors *errors)
{
	FUZZ_CHECK(errors->count > 0);
	unsigned shown = errors->count < CONFIG_ERRORS_MAX ? errors->count : CONFIG_ERRORS_MAX;
	for (unsigned i = 0; i < shown; i++) {
		const struct config_error *error = &errors->errors[i];
		FUZZ_CHECK(memchr(error->path, '\0', sizeof(error->path)) != NULL);
		FUZZ_CHECK(memchr(error->message, '\0', sizeof(error->message)) != NULL);
		FUZZ_CHECK(error->path[0] == '$');
		FUZZ_CHECK(error->message[0] != '\0');
	}
	config_print_errors(null_output, "fuzz.json", errors);
}

static void
check_config(const struct config *config)
{
	char address[16];

	FUZZ_CHECK(config->dataplane.workers >= 1 && config->dataplane.workers <= CONFIG_WORKERS_MAX);
	FUZZ_CHECK(config->service_count <= CONFIG_SERVICES_MAX && config->pool_count <= CONFIG_POOLS_MAX);
	FUZZ_CHECK(config->dataplane.public_port.present);
	for (unsigned p = 0; p < config->pool_count; p++) {
		const struct config_pool *pool = &config->pools[p];
		FUZZ_CHECK(memchr(pool->name, '\0', sizeof(pool->name)) != NULL);
		FUZZ_CHECK(config_pool_index(config, pool->name) == (int)p);
		FUZZ_CHECK(pool->backend_count <= CONFIG_BACKENDS_MAX);
		for (unsigned b = 0; b < pool->backend_count; b++) {
			const struct config_backend *backend = &pool->backends[b];
			FUZZ_CHECK(memchr(backend->name, '\0', sizeof(backend->name)) != NULL);
			FUZZ_CHECK(memchr(backend->fqdn, '\0', sizeof(backend->fqdn)) != NULL);
			config_format_ipv4(backend->address, address);
			FUZZ_CHECK(config_parse_ipv4(address, &(uint32_t){ 0 }) == 0);
		}
	}
	for (unsigned s = 0; s < config->service_count; s++) {
		const struct config_service *service = &config->services[s];
		FUZZ_CHECK(memchr(service->name, '\0', sizeof(service->name)) != NULL);
		FUZZ_CHECK(service->pool < config->pool_count);
		FUZZ_CHECK(service->allow_count <= CONFIG_ALLOW_MAX);
		FUZZ_CHECK(config_persistence_mode_name(service->persistence.mode) != NULL);
		for (unsigned a = 0; a < service->allow_count; a++)
			FUZZ_CHECK(service->allow_from[a].length <= 32);
	}
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	null_output = fopen("/dev/null", "w");
	if (!null_output)
		abort();
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = malloc(size ? size : 1);
	struct config config, again;
	struct config_errors *errors = malloc(sizeof(*errors));

	if (!text || !errors)
		abort();
	if (size)
		memcpy(text, data, size);
	memset(&config, 0, sizeof(config));
	memset(errors, 0, sizeof(*errors));
	int rc = config_parse(text, size, &config, errors);
	FUZZ_CHECK(rc == 0 || rc == -EINVAL);
	if (rc == 0) {
		FUZZ_CHECK(errors->count == 0);
		check_config(&config);
	} else {
		check_errors(errors);
		FUZZ_CHECK(config.service_count == 0 && config.pool_count == 0);
	}

	unsigned first_count = errors->count;
	memset(&again, 0, sizeof(again));
	memset(errors, 0, sizeof(*errors));
	FUZZ_CHECK(config_parse(text, size, &again, errors) == rc);
	FUZZ_CHECK(errors->count == first_count);
	FUZZ_CHECK(again.service_count == config.service_count && again.pool_count == config.pool_count);

	config_free(&again);
	config_free(&config);
	config_free(&config);
	free(errors);
	free(text);
	return 0;
}
