/*
 * test_health.c: the health checks mark a backend up or down for the reason
 * an operator would give, within the time the configuration promises, against
 * real servers on loopback.
 *
 * The servers run in this process, one thread each (a blocking accept loop;
 * the scale test has one epoll thread for 300 listeners), with certificates
 * made here by OpenSSL: a test CA (its PEM in a mkdtemp directory, since the
 * engine takes a CA file), and leaves for cp1.assist.example that are good,
 * expired, for another name, or from another CA.  TLS servers keep OpenSSL's
 * default tickets, so the key name the check harvests can be compared with
 * the server context's own (SSL_CTX_get_tlsext_ticket_keys).
 *
 * Intervals are 100 ms and timeouts 50 ms so that the suite runs in seconds.
 * Under valgrind (or a slow machine) set HEALTH_TEST_TIME_SCALE=10: every
 * interval, timeout and wait is multiplied by it.
 */
#define _GNU_SOURCE             /* accept4, RUSAGE_THREAD */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "config.h"
#include "check.h"
#include "health.h"

#define FQDN "cp1.assist.example"

static unsigned time_scale = 1;

static uint32_t
ms(uint32_t value)
{
	return value * time_scale;
}

static uint32_t
ip(unsigned a, unsigned b, unsigned c, unsigned d)
{
	return (uint32_t)a << 24 | (uint32_t)b << 16 | (uint32_t)c << 8 | d;
}

static uint64_t
now_ms(void)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (uint64_t)now.tv_sec * 1000 + (uint64_t)now.tv_nsec / 1000000;
}

static unsigned
open_fd_count(void)
{
	DIR *dir = opendir("/proc/self/fd");
	struct dirent *entry;
	unsigned count = 0;

	assert_non_null(dir);
	while ((entry = readdir(dir)) != NULL)
		if (entry->d_name[0] != '.')
			count++;
	closedir(dir);
	return count;
}

/* ------------------------------------------------------------------------ */
/* Certificates                                                              */

struct pki {
	char directory[64];
	char ca_file[96];
	EVP_PKEY *key;                  /* one key for every certificate: enough here */
	X509 *ca, *other_ca;
	X509 *good, *expired, *wrong_name, *foreign;
};

static struct pki pki;

static void
cert_extension(X509 *cert, X509V3_CTX *context, int nid, const char *value)
{
	X509_EXTENSION *extension = X509V3_EXT_conf_nid(NULL, context, nid, value);

	assert_non_null(extension);
	assert_int_equal(X509_add_ext(cert, extension, -1), 1);
	X509_EXTENSION_free(extension);
}

/* A certificate for `name`, valid from `from_days` to `to_days` from now,
 * signed by `issuer` (NULL: self-signed, a CA). */
static X509 *
cert_make(const char *name, long from_days, long to_days, X509 *issuer)
{
	static long serial = 1;
	X509 *cert = X509_new();
	X509V3_CTX context;
	char san[128];

	assert_non_null(cert);
	X509_set_version(cert, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(cert), serial++);
	X509_gmtime_adj(X509_getm_notBefore(cert), from_days * 86400L);
	X509_gmtime_adj(X509_getm_notAfter(cert), to_days * 86400L);
	X509_set_pubkey(cert, pki.key);
	X509_NAME_add_entry_by_txt(X509_get_subject_name(cert), "CN", MBSTRING_ASC,
				   (const unsigned char *)name, -1, -1, 0);
	X509_set_issuer_name(cert, X509_get_subject_name(issuer != NULL ? issuer : cert));
	X509V3_set_ctx_nodb(&context);
	X509V3_set_ctx(&context, issuer != NULL ? issuer : cert, cert, NULL, NULL, 0);
	if (issuer == NULL) {
		cert_extension(cert, &context, NID_basic_constraints, "critical,CA:TRUE");
		cert_extension(cert, &context, NID_key_usage, "critical,keyCertSign,cRLSign");
		cert_extension(cert, &context, NID_subject_key_identifier, "hash");
	} else {
		snprintf(san, sizeof san, "DNS:%s", name);
		cert_extension(cert, &context, NID_basic_constraints, "CA:FALSE");
		cert_extension(cert, &context, NID_subject_alt_name, san);
		cert_extension(cert, &context, NID_ext_key_usage, "serverAuth");
	}
	assert_true(X509_sign(cert, pki.key, EVP_sha256()) > 0);
	return cert;
}

static int
pki_setup(void **state)
{
	FILE *file;

	(void)state;
	snprintf(pki.directory, sizeof pki.directory, "/tmp/tether-health-XXXXXX");
	assert_non_null(mkdtemp(pki.directory));
	snprintf(pki.ca_file, sizeof pki.ca_file, "%s/ca.pem", pki.directory);
	pki.key = EVP_EC_gen("P-256");
	assert_non_null(pki.key);
	pki.ca = cert_make("tether test CA", -1, 3650, NULL);
	pki.other_ca = cert_make("some other CA", -1, 3650, NULL);
	pki.good = cert_make(FQDN, -1, 365, pki.ca);
	pki.expired = cert_make(FQDN, -400, -35, pki.ca);
	pki.wrong_name = cert_make("other.assist.example", -1, 365, pki.ca);
	pki.foreign = cert_make(FQDN, -1, 365, pki.other_ca);
	file = fopen(pki.ca_file, "w");
	assert_non_null(file);
	assert_int_equal(PEM_write_X509(file, pki.ca), 1);
	fclose(file);
	return 0;
}

static int
pki_teardown(void **state)
{
	(void)state;
	unlink(pki.ca_file);
	rmdir(pki.directory);
	X509_free(pki.ca);
	X509_free(pki.other_ca);
	X509_free(pki.good);
	X509_free(pki.expired);
	X509_free(pki.wrong_name);
	X509_free(pki.foreign);
	EVP_PKEY_free(pki.key);
	return 0;
}

/* ------------------------------------------------------------------------ */
/* Test servers                                                              */

enum serve { SERVE_TCP, SERVE_TLS, SERVE_HTTP, SERVE_HTTPS };

struct server {
	enum serve kind;
	int listen_fd;
	uint32_t address;
	uint16_t port;
	bool accepting;                 /* false: never accept (a hung server) */
	int status;                     /* http, https */
	SSL_CTX *tls;
	atomic_bool stall;              /* accept, then never answer */
	atomic_int ticket_delay_ms;     /* TLS 1.3: 0 tickets at once, > 0 one this late, < 0 none */
	atomic_int served;
	pthread_t thread;
	int wake[2];
	pthread_mutex_t lock;
	char request[512];              /* the last HTTP request */
	uint32_t peer;                  /* the last client address */
	int held[64];
	unsigned held_count;
};

static int
listen_on(uint32_t address, uint16_t port, int backlog, uint16_t *bound)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	socklen_t length = sizeof sin;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;

	assert_true(fd >= 0);
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	sin.sin_addr.s_addr = htonl(address);
	sin.sin_port = htons(port);
	assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof sin), 0);
	assert_int_equal(listen(fd, backlog), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &length), 0);
	*bound = ntohs(sin.sin_port);
	return fd;
}

/* A port on 127.0.0.1 where nothing listens (bound, then released). */
static uint16_t
free_port(void)
{
	uint16_t port;
	int fd = listen_on(ip(127, 0, 0, 1), 0, 1, &port);

	close(fd);
	return port;
}

/* Read an HTTP request head (to the blank line) from `ssl` or `fd`. */
static void
server_read_request(struct server *server, SSL *ssl, int fd)
{
	char buffer[512];
	size_t length = 0;
	ssize_t received;

	while (length < sizeof buffer - 1) {
		received = ssl != NULL ? SSL_read(ssl, buffer + length, (int)(sizeof buffer - 1 - length))
				       : recv(fd, buffer + length, sizeof buffer - 1 - length, 0);
		if (received <= 0)
			break;
		length += (size_t)received;
		buffer[length] = '\0';
		if (strstr(buffer, "\r\n\r\n") != NULL)
			break;
	}
	buffer[length] = '\0';
	pthread_mutex_lock(&server->lock);
	memcpy(server->request, buffer, length + 1);
	pthread_mutex_unlock(&server->lock);
}

static void
server_respond(struct server *server, SSL *ssl, int fd)
{
	char response[128];
	int length = snprintf(response, sizeof response,
			      "HTTP/1.0 %d Whatever\r\nContent-Length: 2\r\n\r\nok", server->status);

	if (ssl != NULL)
		(void)SSL_write(ssl, response, length);
	else
		(void)send(fd, response, (size_t)length, MSG_NOSIGNAL);
}

static void
server_serve(struct server *server, int fd)
{
	struct timeval limit = { .tv_sec = 2 };
	char buffer[256];
	SSL *ssl;
	int delay_ms;

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit);
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &limit, sizeof limit);
	switch (server->kind) {
	case SERVE_TCP:
		break;
	case SERVE_HTTP:
		server_read_request(server, NULL, fd);
		server_respond(server, NULL, fd);
		break;
	case SERVE_TLS:
	case SERVE_HTTPS:
		ssl = SSL_new(server->tls);
		SSL_set_fd(ssl, fd);
		delay_ms = atomic_load(&server->ticket_delay_ms);
		if (delay_ms != 0)
			SSL_set_num_tickets(ssl, 0);
		if (SSL_accept(ssl) == 1) {
			if (delay_ms > 0) {
				usleep((useconds_t)delay_ms * 1000u);
				if (SSL_new_session_ticket(ssl) == 1)
					(void)SSL_do_handshake(ssl);
			}
			if (server->kind == SERVE_HTTPS) {
				server_read_request(server, ssl, fd);
				server_respond(server, ssl, fd);
			} else {
				/* Until the client's close_notify or close. */
				while (SSL_read(ssl, buffer, sizeof buffer) > 0)
					;
			}
			(void)SSL_shutdown(ssl);
		}
		SSL_free(ssl);
		ERR_clear_error();
		break;
	}
}

static void *
server_main(void *argument)
{
	struct server *server = argument;
	struct pollfd fds[2] = {
		{ .fd = server->wake[0], .events = POLLIN },
		{ .fd = server->listen_fd, .events = POLLIN },
	};
	struct sockaddr_in peer;
	socklen_t length;
	sigset_t pipe_signal;
	int fd;

	/* Writes to a client that left raise SIGPIPE in the writing thread; it is
	 * blocked here only, so the engine (main thread) would still die of one. */
	sigemptyset(&pipe_signal);
	sigaddset(&pipe_signal, SIGPIPE);
	pthread_sigmask(SIG_BLOCK, &pipe_signal, NULL);
	for (;;) {
		if (poll(fds, server->accepting ? 2 : 1, -1) < 0)
			continue;
		if (fds[0].revents != 0)
			break;
		if ((fds[1].revents & POLLIN) == 0)
			continue;
		length = sizeof peer;
		fd = accept4(server->listen_fd, (struct sockaddr *)&peer, &length, SOCK_CLOEXEC);
		if (fd < 0)
			continue;
		pthread_mutex_lock(&server->lock);
		server->peer = ntohl(peer.sin_addr.s_addr);
		pthread_mutex_unlock(&server->lock);
		if (atomic_load(&server->stall)) {
			if (server->held_count < 64)
				server->held[server->held_count++] = fd;
			else
				close(fd);
			continue;
		}
		server_serve(server, fd);
		close(fd);
		atomic_fetch_add(&server->served, 1);
	}
	return NULL;
}

static SSL_CTX *
server_tls(X509 *cert, int max_version)
{
	SSL_CTX *context = SSL_CTX_new(TLS_server_method());

	assert_non_null(context);
	assert_int_equal(SSL_CTX_use_certificate(context, cert), 1);
	assert_int_equal(SSL_CTX_use_PrivateKey(context, pki.key), 1);
	if (max_version != 0)
		SSL_CTX_set_max_proto_version(context, max_version);
	return context;
}

/* Start `server` on `address`:`port` (0: any free port).  `cert`: TLS kinds. */
static void
server_start(struct server *server, enum serve kind, uint32_t address, uint16_t port,
	     X509 *cert, int max_version)
{
	memset(server, 0, sizeof *server);
	server->kind = kind;
	server->address = address;
	server->accepting = true;
	server->status = 200;
	pthread_mutex_init(&server->lock, NULL);
	server->listen_fd = listen_on(address, port, 64, &server->port);
	if (cert != NULL)
		server->tls = server_tls(cert, max_version);
	assert_int_equal(pipe(server->wake), 0);
	assert_int_equal(pthread_create(&server->thread, NULL, server_main, server), 0);
}

/* A listener that never accepts, its accept queue already full: connects to
 * it hang like those to a wedged server. */
static void
server_start_hung(struct server *server, int *fillers, unsigned filler_count)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	unsigned i;

	memset(server, 0, sizeof *server);
	server->kind = SERVE_TCP;
	server->address = ip(127, 0, 0, 1);
	pthread_mutex_init(&server->lock, NULL);
	server->listen_fd = listen_on(server->address, 0, 0, &server->port);
	assert_int_equal(pipe(server->wake), 0);
	assert_int_equal(pthread_create(&server->thread, NULL, server_main, server), 0);
	sin.sin_addr.s_addr = htonl(server->address);
	sin.sin_port = htons(server->port);
	for (i = 0; i < filler_count; i++) {
		fillers[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		(void)connect(fillers[i], (struct sockaddr *)&sin, sizeof sin);
	}
	usleep(20000);
}

static void
server_stop(struct server *server)
{
	unsigned i;

	assert_int_equal(write(server->wake[1], "x", 1), 1);
	pthread_join(server->thread, NULL);
	for (i = 0; i < server->held_count; i++)
		close(server->held[i]);
	close(server->listen_fd);
	close(server->wake[0]);
	close(server->wake[1]);
	SSL_CTX_free(server->tls);
	pthread_mutex_destroy(&server->lock);
}

/* The name of the key that seals the server's tickets. */
static void
server_key_name(struct server *server, uint8_t name[HEALTH_KEY_NAME_LENGTH])
{
	unsigned char keys[80];

	assert_int_equal(SSL_CTX_get_tlsext_ticket_keys(server->tls, keys, sizeof keys), 1);
	memcpy(name, keys, HEALTH_KEY_NAME_LENGTH);
}

/* ------------------------------------------------------------------------ */
/* Configs                                                                   */

#define POOLS_MAX    2
#define BACKENDS_MAX 4

struct fixture {
	struct config config;
	struct config_pool pools[POOLS_MAX];
	struct config_backend backends[POOLS_MAX][BACKENDS_MAX];
	struct config_service services[2];
};

/* Pool `index` checked by `type`, 100 ms interval, 50 ms timeout, rise 2,
 * fall 2 (all scaled). */
static struct config_pool *
fixture_pool(struct fixture *fixture, unsigned index, const char *name,
	     enum config_health_type type, unsigned backend_count)
{
	struct config_pool *pool = &fixture->pools[index];

	memset(pool, 0, sizeof *pool);
	snprintf(pool->name, sizeof pool->name, "%s", name);
	pool->backend_count = backend_count;
	pool->backends = fixture->backends[index];
	pool->health = (struct config_health){
		.type = type, .interval_ms = ms(100), .timeout_ms = ms(50), .rise = 2,
		.fall = 2, .path = "/", .expect_status = 200,
	};
	if (type == CONFIG_HEALTH_TLS || type == CONFIG_HEALTH_HTTPS)
		snprintf(pool->health.ca, sizeof pool->health.ca, "%s", pki.ca_file);
	fixture->config.pools = fixture->pools;
	if (fixture->config.pool_count < index + 1)
		fixture->config.pool_count = index + 1;
	return pool;
}

static void
fixture_backend(struct fixture *fixture, unsigned pool, unsigned index, const char *name,
		uint32_t address, uint16_t port, const char *fqdn)
{
	struct config_backend *backend = &fixture->backends[pool][index];

	memset(backend, 0, sizeof *backend);
	snprintf(backend->name, sizeof backend->name, "%s", name);
	backend->address = address;
	backend->port = port;
	backend->weight = 1;
	backend->enabled = true;
	snprintf(backend->fqdn, sizeof backend->fqdn, "%s", fqdn != NULL ? fqdn : "");
}

/* A one-pool, one-backend config pointing at `server`. */
static struct config_pool *
fixture_single(struct fixture *fixture, enum config_health_type type, const struct server *server)
{
	struct config_pool *pool;

	memset(fixture, 0, sizeof *fixture);
	pool = fixture_pool(fixture, 0, "cp", type, 1);
	fixture_backend(fixture, 0, 0, "cp1", server->address, server->port, FQDN);
	return pool;
}

/* ------------------------------------------------------------------------ */
/* Recording what the engine reports                                         */

struct change {
	unsigned pool, backend;
	enum health_state from, to;
	char reason[HEALTH_ERROR_MAX];
	uint64_t at_ms;
	uint64_t checks;
	uint32_t consecutive_successes, consecutive_failures;
};

struct recorder {
	struct health_engine *engine;
	unsigned count;
	struct change changes[32];
	unsigned key_name_reports;
};

static void
record_change(void *arg, unsigned pool, unsigned backend, const char *pool_name,
	      const char *backend_name, enum health_state from, enum health_state to,
	      const char *reason)
{
	struct recorder *recorder = arg;
	const struct health_backend_state *state =
		health_engine_backend(recorder->engine, pool, backend);
	struct change *change;

	assert_non_null(pool_name);
	assert_non_null(backend_name);
	assert_non_null(state);
	assert_int_equal(state->state, to);
	if (recorder->count >= 32)
		return;
	change = &recorder->changes[recorder->count++];
	change->pool = pool;
	change->backend = backend;
	change->from = from;
	change->to = to;
	snprintf(change->reason, sizeof change->reason, "%s", reason);
	change->at_ms = now_ms();
	change->checks = state->checks;
	change->consecutive_successes = state->consecutive_successes;
	change->consecutive_failures = state->consecutive_failures;
}

static void
record_key_name(void *arg, unsigned pool, unsigned backend, const struct health_backend_state *state)
{
	struct recorder *recorder = arg;

	(void)pool, (void)backend, (void)state;
	recorder->key_name_reports++;
}

static struct health_engine *
engine_new(const struct config *config, struct recorder *recorder)
{
	memset(recorder, 0, sizeof *recorder);
	recorder->engine = health_engine_create(config, record_change, recorder);
	assert_non_null(recorder->engine);
	health_engine_set_key_name_callback(recorder->engine, record_key_name);
	return recorder->engine;
}

static void
run_for(struct health_engine *engine, uint32_t duration_ms)
{
	uint64_t end = now_ms() + duration_ms, now;

	while ((now = now_ms()) < end)
		assert_true(health_engine_run_once(engine, (int)(end - now)) >= 0);
}

/* Run until backend (pool, backend) is in `wanted`; returns the ms it took, or
 * fails the test after `limit_ms`. */
static uint64_t
run_until_state(struct health_engine *engine, unsigned pool, unsigned backend,
		enum health_state wanted, uint32_t limit_ms)
{
	uint64_t start = now_ms(), end = start + limit_ms, now;
	const struct health_backend_state *state;

	while ((state = health_engine_backend(engine, pool, backend))->state != wanted) {
		now = now_ms();
		if (now >= end)
			fail_msg("backend %u/%u still %s after %u ms (last error '%s')", pool, backend,
				 health_state_name(state->state), limit_ms, state->last_error);
		assert_true(health_engine_run_once(engine, (int)(end - now)) >= 0);
	}
	return now_ms() - start;
}

static void
run_until_checks(struct health_engine *engine, unsigned pool, unsigned backend,
		 uint64_t checks, uint32_t limit_ms)
{
	uint64_t end = now_ms() + limit_ms, now;

	while (health_engine_backend(engine, pool, backend)->checks < checks) {
		now = now_ms();
		if (now >= end)
			fail_msg("backend %u/%u: fewer than %llu checks after %u ms", pool, backend,
				 (unsigned long long)checks, limit_ms);
		assert_true(health_engine_run_once(engine, (int)(end - now)) >= 0);
	}
}

/* ------------------------------------------------------------------------ */
/* State and the port rule                                                   */

/* A backend is "unknown" (and serves traffic) until its first check; a pool
 * without checks is up from the start and never probed. */
static void
test_backends_start_unknown_and_unchecked_pools_are_up(void **state)
{
	struct fixture fixture;
	struct recorder recorder;
	struct health_engine *engine;
	const struct health_backend_state *backend;

	(void)state;
	memset(&fixture, 0, sizeof fixture);
	fixture_pool(&fixture, 0, "checked", CONFIG_HEALTH_TCP, 1);
	fixture_backend(&fixture, 0, 0, "be1", ip(127, 0, 0, 1), free_port(), NULL);
	fixture_pool(&fixture, 1, "unchecked", CONFIG_HEALTH_NONE, 1);
	fixture_backend(&fixture, 1, 0, "be2", ip(127, 0, 0, 1), 1, NULL);
	engine = engine_new(&fixture.config, &recorder);

	backend = health_engine_backend(engine, 0, 0);
	assert_int_equal(backend->state, HEALTH_UNKNOWN);
	assert_true(health_state_serves(backend->state));
	assert_false(backend->checked);
	assert_int_equal(health_engine_backend(engine, 1, 0)->state, HEALTH_UP);
	assert_null(health_engine_backend(engine, 1, 1));
	assert_null(health_engine_backend(engine, 2, 0));
	run_for(engine, ms(250));
	assert_int_equal(health_engine_backend(engine, 1, 0)->checks, 0);
	assert_true(health_engine_backend(engine, 0, 0)->checks >= 2);
	health_engine_destroy(engine);
}

/* The port probed: health.port, else the backend's, else the destination port
 * of the first service using the pool (docs/configuration.md). */
static void
test_probe_port_follows_the_documented_rule(void **state)
{
	struct fixture fixture;

	(void)state;
	memset(&fixture, 0, sizeof fixture);
	fixture_pool(&fixture, 0, "portal", CONFIG_HEALTH_TCP, 2);
	fixture_backend(&fixture, 0, 0, "be1", ip(127, 0, 0, 1), 9443, NULL);
	fixture_backend(&fixture, 0, 1, "be2", ip(127, 0, 0, 2), 0, NULL);
	fixture_pool(&fixture, 1, "lonely", CONFIG_HEALTH_TCP, 1);
	fixture_backend(&fixture, 1, 0, "be3", ip(127, 0, 0, 3), 0, NULL);
	fixture.services[0] = (struct config_service){ .name = "http", .port = 80, .pool = 0 };
	fixture.services[1] = (struct config_service){ .name = "https", .port = 443,
						      .target_port = 8443, .pool = 0 };
	fixture.config.services = fixture.services;
	fixture.config.service_count = 2;

	assert_int_equal(health_probe_port(&fixture.config, 0, 0), 9443);  /* backend */
	assert_int_equal(health_probe_port(&fixture.config, 0, 1), 80);    /* first service */
	fixture.services[0].target_port = 8080;
	assert_int_equal(health_probe_port(&fixture.config, 0, 1), 8080);  /* its target */
	fixture.pools[0].health.port = 8081;
	assert_int_equal(health_probe_port(&fixture.config, 0, 0), 8081);  /* health.port */
	assert_int_equal(health_probe_port(&fixture.config, 0, 1), 8081);
	assert_int_equal(health_probe_port(&fixture.config, 1, 0), 0);     /* no service */
}

/* A backend with no port to probe is reported down with the fix in the text,
 * not silently left unknown. */
static void
test_backend_without_a_port_is_down_with_the_reason(void **state)
{
	struct fixture fixture;
	struct recorder recorder;
	struct health_engine *engine;

	(void)state;
	memset(&fixture, 0, sizeof fixture);
	fixture_pool(&fixture, 0, "lonely", CONFIG_HEALTH_TCP, 1);
	fixture_backend(&fixture, 0, 0, "be1", ip(127, 0, 0, 1), 0, NULL);
	engine = engine_new(&fixture.config, &recorder);
	run_until_state(engine, 0, 0, HEALTH_DOWN, ms(1000));
	assert_string_equal(recorder.changes[0].reason,
			    "no port to probe: set health.port or the backend's port");
	health_engine_destroy(engine);
}

/* ------------------------------------------------------------------------ */
/* tcp                                                                       */

/* A listening server: up after the first check, one change reported. */
static void
test_tcp_check_up_when_a_listener_exists(void **state)
{
	struct server server;
	struct fixture fixture;
	struct recorder recorder;
	struct health_engine *engine;
	const struct health_backend_state *backend;

	(void)state;
	server_start(&server, SERVE_TCP, ip(127, 0, 0, 1), 0, NULL, 0);
	fixture_single(&fixture, CONFIG_HEALTH_TCP, &server);
	engine = engine_new(&fixture.config, &recorder);

	run_until_state(engine, 0, 0, HEALTH_UP, ms(500));
	backend = health_engine_backend(engine, 0, 0);
	assert_true(backend->checked);
	assert_true(backend->last_ok);
	assert_string_equal(backend->last_error, "");
	assert_int_equal(backend->port, server.port);
	assert_true(backend->latency_us > 0 && backend->latency_us < ms(50) * 1000);
	assert_int_equal(recorder.count, 1);
	assert_int_equal(recorder.changes[0].from, HEALTH_UNKNOWN);
	assert_int_equal(recorder.changes[0].to, HEALTH_UP);
	assert_string_equal(recorder.changes[0].reason, "check passed");
	run_for(engine, ms(300));
	assert_int_equal(recorder.count, 1);            /* no news is no callback */
	assert_true(backend->checks >= 3);
	assert_int_equal(backend->failures, 0);
	health_engine_destroy(engine);
	server_stop(&server);
}

/* Nothing listening: down after exactly `fall` refused connects. */
static void
test_tcp_check_down_after_fall_with_connection_refused(void **state)
{
	struct fixture fixture;
	struct recorder recorder;
	struct health_engine *engine;
	const struct health_backend_state *backend;

	(void)state;
	memset(&fixture, 0, sizeof fixture);
	fixture_pool(&fixture, 0, "cp", CONFIG_HEALTH_TCP, 1)->health.fall = 3;
	fixture_backend(&fixture, 0, 0, "cp1", ip(127, 0, 0, 1), free_port(), NULL);
	engine = engine_new(&fixture.config, &recorder);

	run_until_state(engine, 0, 0, HEALTH_DOWN, ms(1000));
	assert_int_equal(recorder.count, 1);
	assert_int_equal(recorder.changes[0].from, HEALTH_UNKNOWN);
	assert_int_equal(recorder.changes[0].checks, 3);
	assert_int_equal(recorder.changes[0].consecutive_failures, 3);
	assert_string_equal(recorder.changes[0].reason, "connect: Connection refused");
	backend = health_engine_backend(engine, 0, 0);
	assert_false(backend->last_ok);
	assert_string_equal(backend->last_error, "connect: Connection refused");
	assert_int_equal(backend->failures, backend->checks);
	health_engine_destroy(engine);
}

/* A server whose accept queue is full (it stopped calling accept): the
 * connect hangs and the check times out, down after `fall` timeouts. */
static void
test_tcp_check_times_out_on_a_listener_that_never_accepts(void **state)
{
	struct server server;
	struct fixture fixture;
	struct recorder recorder;
	struct health_engine *engine;
	char expected[64];
	int fillers[4];
	unsigned i;

	(void)state;
	server_start_hung(&server, fillers, 4);
	fixture_single(&fixture, CONFIG_HEALTH_TCP, &server);
	engine = engine_new(&fixture.config, &recorder);

	run_until_state(engine, 0, 0, HEALTH_DOWN, ms(1000));
	snprintf(expected, sizeof expected, "timeout after %u ms (connecting)", ms(50));
	assert_string_equal(recorder.changes[recorder.count - 1].reason, expected);
	assert_true(health_engine_backend(engine, 0, 0)->latency_us >= ms(50) * 1000);
	health_engine_destroy(engine);
	for (i = 0; i < 4; i++)
		close(fillers[i]);
	server_stop(&server);
}

/* ------------------------------------------------------------------------ */
/* tls                                                                       */

/* The right CA and name: up, and the certificate's days to expiry (a
 * one-year certificate issued a day ago: 364). */
static void
test_tls_check_up_with_right_ca_and_name_reports_days_to_expiry(void **state)
{
	struct server server;
	struct fixture fixture;
	struct recorder recorder;
	struct health_engine *engine;
	const struct health_backend_state *backend;

	(void)state;
	server_start(&server, SERVE_TLS, ip(127, 0, 0, 1), 0, pki.good, 0);
	fixture_single(&fixture, CONFIG_HEALTH_TLS, &server);
	engine = engine_new(&fixture.config, &recorder);

	run_until_state(engine, 0, 0, HEALTH_UP, ms(500));
	backend = health_engine_backend(engine, 0, 0);
	assert_true(backend->expiry_known);
	assert_in_range(backend->days_to_expiry, 363, 365);
	assert_string_equal(backend->last_error, "");
	print_message("    tls check latency %u us, %d days to expiry\n", backend->latency_us,
		      backend->days_to_expiry);
	health_engine_destroy(engine);
	server_stop(&server);
}

static void
tls_check_down_for(X509 *cert, const char *reason, const struct health_backend_state **out,
		   struct server *server, struct health_engine **engine_out,
		   struct recorder *recorder)
{
	static struct fixture fixture;
	struct health_engine *engine;

	server_start(server, SERVE_TLS, ip(127, 0, 0, 1), 0, cert, 0);
	fixture_single(&fixture, CONFIG_HEALTH_TLS, server);
	engine = engine_new(&fixture.config, recorder);
	run_until_state(engine, 0, 0, HEALTH_DOWN, ms(1000));
	assert_int_equal(recorder->count, 1);
	assert_string_equal(recorder->changes[0].reason, reason);
	*out = health_engine_backend(engine, 0, 0);
	assert_string_equal((*out)->last_error, reason);
	*engine_out = engine;
}

/* An expired certificate: down, the reason says so, and days to expiry are
 * negative (it expired 35 days ago). */
static void
test_tls_check_down_for_an_expired_certificate(void **state)
{
	const struct health_backend_state *backend;
	struct health_engine *engine;
	struct recorder recorder;
	struct server server;

	(void)state;
	tls_check_down_for(pki.expired, "TLS: certificate verify failed: certificate has expired",
			   &backend, &server, &engine, &recorder);
	assert_true(backend->expiry_known);
	assert_in_range(backend->days_to_expiry + 100, 100 - 37, 100 - 35);
	assert_false(backend->ticket_key_name_valid);   /* no harvest from a bad server */
	health_engine_destroy(engine);
	server_stop(&server);
}

/* A certificate for another name: down with the name it wanted. */
static void
test_tls_check_down_for_a_hostname_mismatch(void **state)
{
	const struct health_backend_state *backend;
	struct health_engine *engine;
	struct recorder recorder;
	struct server server;

	(void)state;
	tls_check_down_for(pki.wrong_name, "TLS: hostname mismatch (wanted " FQDN ")",
			   &backend, &server, &engine, &recorder);
	assert_in_range(backend->days_to_expiry, 363, 365);
	health_engine_destroy(engine);
	server_stop(&server);
}

/* A certificate from a CA the pool does not trust: down. */
static void
test_tls_check_down_for_an_untrusted_issuer(void **state)
{
	const struct health_backend_state *backend;
	struct health_engine *engine;
	struct recorder recorder;
	struct server server;

	(void)state;
	tls_check_down_for(pki.foreign,
			   "TLS: certificate verify failed: unable to get local issuer certificate",
			   &backend, &server, &engine, &recorder);
	health_engine_destroy(engine);
	server_stop(&server);
}

/* A CA file that cannot be read: every check of the pool fails, naming it;
 * the engine itself is created all the same. */
static void
test_tls_check_down_when_the_ca_file_is_missing(void **state)
{
	struct server server;
	struct fixture fixture;
	struct recorder recorder;
	struct health_engine *engine;

	(void)state;
	server_start(&server, SERVE_TLS, ip(127, 0, 0, 1), 0, pki.good, 0);
	fixture_single(&fixture, CONFIG_HEALTH_TLS, &server);
	snprintf(fixture.pools[0].health.ca, sizeof fixture.pools[0].health.ca,
		 "/nonexistent/ca.pem");
	engine = engine_new(&fixture.config, &recorder);
	run_until_state(engine, 0, 0, HEALTH_DOWN, ms(1000));
	assert_non_null(strstr(recorder.changes[0].reason,
			       "TLS: cannot load CA file '/nonexistent/ca.pem'"));
	print_message("    reason: %s\n", recorder.changes[0].reason);
	health_engine_destroy(engine);
	server_stop(&server);
}

/* A TLS server that stops answering (accepts, never completes a handshake):
 * down within fall x interval + timeout of the moment it stopped, and the
 * reason is the timeout. */
static void
test_tls_check_down_within_fall_intervals_when_the_server_stops_answering(void **state)
{
	struct server server;
	struct fixture fixture;
	struct recorder recorder;
	struct health_engine *engine;
	uint64_t took, bound;
	char expected[64];

	(void)state;
	server_start(&server, SERVE_TLS, ip(127, 0, 0, 1), 0, pki.good, 0);
	fixture_single(&fixture, CONFIG_HEALTH_TLS, &server);
	engine = engine_new(&fixture.config, &recorder);
	run_until_state(engine, 0, 0, HEALTH_UP, ms(500));

	atomic_store(&server.stall, true);
	took = run_until_state(engine, 0, 0, HEALTH_DOWN, ms(2000));
	bound = 2 * ms(100) + ms(50);
	print_message("    down %llu ms after the server stopped (bound %llu ms)\n",
		      (unsigned long long)took, (unsigned long long)bound);
	assert_true(took <= bound + ms(20));
	snprintf(expected, sizeof expected, "timeout after %u ms (TLS handshake)", ms(50));
	assert_string_equal(recorder.changes[1].reason, expected);
	assert_int_equal(recorder.changes[1].consecutive_failures, 2);
	health_engine_destroy(engine);
	server_stop(&server);
}

/* TLS 1.3: the check harvests the 16-byte key name of the server's tickets
 * (the one its context seals them with), the same on the next check, and
 * another server's is different. */
static void
test_tls_check_harvests_the_ticket_key_name_of_each_server(void **state)
{
	struct server first, second;
	struct fixture fixture;
	struct recorder recorder;
	struct health_engine *engine;
	const struct health_backend_state *a, *b;
	uint8_t expected[HEALTH_KEY_NAME_LENGTH], seen[HEALTH_KEY_NAME_LENGTH];

	(void)state;
	server_start(&first, SERVE_TLS, ip(127, 0, 0, 1), 0, pki.good, 0);
	server_start(&second, SERVE_TLS, ip(127, 0, 0, 2), 0, pki.good, 0);
	memset(&fixture, 0, sizeof fixture);
	fixture_pool(&fixture, 0, "cp", CONFIG_HEALTH_TLS, 2);
	fixture_backend(&fixture, 0, 0, "cp1", first.address, first.port, FQDN);
	fixture_backend(&fixture, 0, 1, "cp2", second.address, second.port, FQDN);
	engine = engine_new(&fixture.config, &recorder);

	run_until_checks(engine, 0, 0, 1, ms(1000));
	a = health_engine_backend(engine, 0, 0);
	assert_true(a->last_ok);
	assert_true(a->ticket_key_name_valid);
	server_key_name(&first, expected);
	assert_memory_equal(a->ticket_key_name, expected, HEALTH_KEY_NAME_LENGTH);
	memcpy(seen, a->ticket_key_name, sizeof seen);

	run_until_checks(engine, 0, 0, 3, ms(1000));
	run_until_checks(engine, 0, 1, 3, ms(1000));
	assert_true(a->ticket_key_name_valid);
	assert_memory_equal(a->ticket_key_name, seen, HEALTH_KEY_NAME_LENGTH);
	b = health_engine_backend(engine, 0, 1);
	assert_true(b->ticket_key_name_valid);
	server_key_name(&second, expected);
	assert_memory_equal(b->ticket_key_name, expected, HEALTH_KEY_NAME_LENGTH);
	assert_memory_not_equal(b->ticket_key_name, seen, HEALTH_KEY_NAME_LENGTH);
	/* One report per backend: when it first became known, not on repeats. */
	assert_int_equal(recorder.key_name_reports, 2);
	health_engine_destroy(engine);
	server_stop(&first);
	server_stop(&second);
}

/* A server whose ticket comes after the check's timeout keeps its key name
 * (the timeout cut the wait short: no verdict); one that sends none in the
 * whole 200 ms wait loses it. */
static void
test_tls_check_keeps_the_key_name_when_the_timeout_cuts_the_ticket_wait(void **state)
{
	struct server server;
	struct fixture fixture;
	struct recorder recorder;
	struct health_engine *engine;
	struct config_pool *pool;
	const struct health_backend_state *backend;
	uint8_t expected[HEALTH_KEY_NAME_LENGTH];

	(void)state;
	server_start(&server, SERVE_TLS, ip(127, 0, 0, 1), 0, pki.good, 0);
	server_key_name(&server, expected);
	fixture_single(&fixture, CONFIG_HEALTH_TLS, &server);
	engine = engine_new(&fixture.config, &recorder);
	run_until_checks(engine, 0, 0, 1, ms(1000));
	backend = health_engine_backend(engine, 0, 0);
	assert_true(backend->ticket_key_name_valid);

	/* the ticket 80 ms after the handshake, the check's timeout at 50 ms */
	atomic_store(&server.ticket_delay_ms, (int)ms(80));
	run_until_checks(engine, 0, 0, backend->checks + 3, ms(2000));
	assert_int_equal(backend->state, HEALTH_UP);
	assert_true(backend->ticket_key_name_valid);
	assert_memory_equal(backend->ticket_key_name, expected, HEALTH_KEY_NAME_LENGTH);
	assert_int_equal(recorder.key_name_reports, 1);
	health_engine_destroy(engine);

	/* no ticket at all, with a timeout that lets the whole wait run */
	pool = fixture_single(&fixture, CONFIG_HEALTH_TLS, &server);
	pool->health.interval_ms = ms(100) + 2 * CHECK_TICKET_WAIT_MS;
	pool->health.timeout_ms = ms(50) + CHECK_TICKET_WAIT_MS;
	atomic_store(&server.ticket_delay_ms, 0);
	engine = engine_new(&fixture.config, &recorder);
	run_until_checks(engine, 0, 0, 1, ms(2000));
	backend = health_engine_backend(engine, 0, 0);
	assert_true(backend->ticket_key_name_valid);
	atomic_store(&server.ticket_delay_ms, -1);
	run_until_checks(engine, 0, 0, backend->checks + 1, ms(2000));
	assert_int_equal(backend->state, HEALTH_UP);
	assert_false(backend->ticket_key_name_valid);
	assert_int_equal(recorder.key_name_reports, 2);
	health_engine_destroy(engine);
	server_stop(&server);
}

/* TLS 1.2: the ticket comes inside the handshake; same harvest. */
static void
test_tls12_check_harvests_the_ticket_key_name(void **state)
{
	struct server server;
	struct fixture fixture;
	struct recorder recorder;
	struct health_engine *engine;
	const struct health_backend_state *backend;
	uint8_t expected[HEALTH_KEY_NAME_LENGTH];

	(void)state;
	server_start(&server, SERVE_TLS, ip(127, 0, 0, 1), 0, pki.good, TLS1_2_VERSION);
	fixture_single(&fixture, CONFIG_HEALTH_TLS, &server);
	engine = engine_new(&fixture.config, &recorder);
	run_until_checks(engine, 0, 0, 1, ms(1000));
	backend = health_engine_backend(engine, 0, 0);
	assert_true(backend->last_ok);
	assert_true(backend->ticket_key_name_valid);
	server_key_name(&server, expected);
	assert_memory_equal(backend->ticket_key_name, expected, HEALTH_KEY_NAME_LENGTH);
	health_engine_destroy(engine);
	server_stop(&server);
}

/* ------------------------------------------------------------------------ */
/* http, https                                                               */

/* 200 on GET path: up; the request is HTTP/1.0 with the fqdn as Host. */
static void
test_http_check_up_on_200_with_path_and_host(void **state)
{
	struct server server;
	struct fixture fixture;
	struct recorder recorder;
	struct health_engine *engine;
	char host[64];

	(void)state;
	server_start(&server, SERVE_HTTP, ip(127, 0, 0, 1), 0, NULL, 0);
	snprintf(fixture_single(&fixture, CONFIG_HEALTH_HTTP, &server)->health.path,
		 CONFIG_HTTP_PATH_MAX, "/healthz");
	engine = engine_new(&fixture.config, &recorder);
	run_until_state(engine, 0, 0, HEALTH_UP, ms(500));
	pthread_mutex_lock(&server.lock);
	assert_true(strncmp(server.request, "GET /healthz HTTP/1.0\r\n", 23) == 0);
	snprintf(host, sizeof host, "\r\nHost: %s:%u\r\n", FQDN, server.port);
	assert_non_null(strstr(server.request, host));
	pthread_mutex_unlock(&server.lock);
	health_engine_destroy(engine);
	server_stop(&server);
}

/* 503: down, "status 503, expected 200". */
static void
test_http_check_down_on_503_with_the_status_in_the_reason(void **state)
{
	struct server server;
	struct fixture fixture;
	struct recorder recorder;
	struct health_engine *engine;

	(void)state;
	server_start(&server, SERVE_HTTP, ip(127, 0, 0, 1), 0, NULL, 0);
	server.status = 503;
	fixture_single(&fixture, CONFIG_HEALTH_HTTP, &server);
	engine = engine_new(&fixture.config, &recorder);
	run_until_state(engine, 0, 0, HEALTH_DOWN, ms(1000));
	assert_string_equal(recorder.changes[0].reason, "HTTP: status 503, expected 200");
	health_engine_destroy(engine);
	server_stop(&server);
}

/* https: TLS verified, then the HTTP status; up on 200 with expiry known. */
static void
test_https_check_up_on_200(void **state)
{
	struct server server;
	struct fixture fixture;
	struct recorder recorder;
	struct health_engine *engine;
	const struct health_backend_state *backend;

	(void)state;
	server_start(&server, SERVE_HTTPS, ip(127, 0, 0, 1), 0, pki.good, 0);
	fixture_single(&fixture, CONFIG_HEALTH_HTTPS, &server);
	engine = engine_new(&fixture.config, &recorder);
	run_until_state(engine, 0, 0, HEALTH_UP, ms(500));
	backend = health_engine_backend(engine, 0, 0);
	assert_in_range(backend->days_to_expiry, 363, 365);
	pthread_mutex_lock(&server.lock);
	assert_true(strncmp(server.request, "GET / HTTP/1.0\r\n", 16) == 0);
	pthread_mutex_unlock(&server.lock);

	server.status = 500;
	run_until_state(engine, 0, 0, HEALTH_DOWN, ms(1000));
	assert_string_equal(backend->last_error, "HTTP: status 500, expected 200");
	health_engine_destroy(engine);
	server_stop(&server);
}

/* ------------------------------------------------------------------------ */
/* rise, reload, resources                                                   */

/* A down backend whose server comes back is up only after `rise` (3)
 * consecutive successes. */
static void
test_down_backend_comes_up_only_after_rise_successes(void **state)
{
	struct server server;
	struct fixture fixture;
	struct recorder recorder;
	struct health_engine *engine;
	struct config_pool *pool;
	uint16_t port = free_port();

	(void)state;
	memset(&fixture, 0, sizeof fixture);
	pool = fixture_pool(&fixture, 0, "cp", CONFIG_HEALTH_TCP, 1);
	pool->health.fall = 1;
	pool->health.rise = 3;
	fixture_backend(&fixture, 0, 0, "cp1", ip(127, 0, 0, 1), port, NULL);
	engine = engine_new(&fixture.config, &recorder);
	run_until_state(engine, 0, 0, HEALTH_DOWN, ms(500));

	server_start(&server, SERVE_TCP, ip(127, 0, 0, 1), port, NULL, 0);
	run_until_state(engine, 0, 0, HEALTH_UP, ms(1000));
	assert_int_equal(recorder.count, 2);
	assert_int_equal(recorder.changes[1].from, HEALTH_DOWN);
	assert_int_equal(recorder.changes[1].consecutive_successes, 3);
	assert_string_equal(recorder.changes[1].reason, "3 consecutive checks passed");
	assert_true(recorder.changes[1].at_ms - recorder.changes[0].at_ms >= 2 * ms(100) - 5);
	health_engine_destroy(engine);
	server_stop(&server);
}

/* A reload keeps the state and counters of a backend whose identity and check
 * are unchanged (even at another index), starts new and changed ones afresh,
 * drops removed ones, and reports nothing for the ones it kept. */
static void
test_update_keeps_the_state_of_unchanged_backends(void **state)
{
	struct server web1, web3, api1;
	struct fixture before, after;
	struct recorder recorder;
	struct health_engine *engine;
	const struct health_backend_state *kept;
	uint64_t checks_before;
	unsigned fds_before, i;
	uint16_t refused = free_port();

	(void)state;
	server_start(&web1, SERVE_TCP, ip(127, 0, 0, 1), 0, NULL, 0);
	server_start(&web3, SERVE_TCP, ip(127, 0, 0, 3), 0, NULL, 0);
	server_start(&api1, SERVE_TCP, ip(127, 0, 0, 4), 0, NULL, 0);
	memset(&before, 0, sizeof before);
	fixture_pool(&before, 0, "web", CONFIG_HEALTH_TCP, 2)->health.fall = 1;
	fixture_backend(&before, 0, 0, "web1", web1.address, web1.port, NULL);
	fixture_backend(&before, 0, 1, "web2", ip(127, 0, 0, 1), refused, NULL);
	fixture_pool(&before, 1, "api", CONFIG_HEALTH_TCP, 1);
	fixture_backend(&before, 1, 0, "api1", api1.address, api1.port, NULL);
	engine = engine_new(&before.config, &recorder);
	run_until_state(engine, 0, 0, HEALTH_UP, ms(500));
	run_until_state(engine, 0, 1, HEALTH_DOWN, ms(500));
	run_until_state(engine, 1, 0, HEALTH_UP, ms(500));
	checks_before = health_engine_backend(engine, 0, 0)->checks;
	fds_before = open_fd_count();

	/* web3 added in front of web1, web2 removed, api's rise changed. */
	memset(&after, 0, sizeof after);
	fixture_pool(&after, 0, "web", CONFIG_HEALTH_TCP, 2)->health.fall = 1;
	fixture_backend(&after, 0, 0, "web3", web3.address, web3.port, NULL);
	fixture_backend(&after, 0, 1, "web1", web1.address, web1.port, NULL);
	fixture_pool(&after, 1, "api", CONFIG_HEALTH_TCP, 1)->health.rise = 3;
	fixture_backend(&after, 1, 0, "api1", api1.address, api1.port, NULL);
	recorder.count = 0;
	assert_int_equal(health_engine_update(engine, &after.config), 0);

	kept = health_engine_backend(engine, 0, 1);
	assert_int_equal(kept->state, HEALTH_UP);
	assert_true(kept->checks >= checks_before);
	assert_int_equal(health_engine_backend(engine, 0, 0)->state, HEALTH_UNKNOWN);
	assert_int_equal(health_engine_backend(engine, 0, 0)->checks, 0);
	assert_int_equal(health_engine_backend(engine, 1, 0)->state, HEALTH_UNKNOWN);
	assert_null(health_engine_backend(engine, 0, 2));

	run_until_state(engine, 0, 0, HEALTH_UP, ms(500));
	run_until_state(engine, 1, 0, HEALTH_UP, ms(500));
	run_for(engine, ms(200));
	assert_true(kept->checks > checks_before);
	for (i = 0; i < recorder.count; i++)    /* nothing about web1, at any index */
		assert_false(recorder.changes[i].pool == 0 && recorder.changes[i].backend == 1);
	assert_int_equal(recorder.count, 2);
	assert_true(open_fd_count() <= fds_before + 3);

	health_engine_destroy(engine);
	server_stop(&web1);
	server_stop(&web3);
	server_stop(&api1);
}

/* A reload while a kept backend's check is in flight: the check carries on
 * and its result lands on the backend at its new place. */
static void
test_update_keeps_a_check_in_flight(void **state)
{
	struct server server;
	struct fixture fixture;
	struct recorder recorder;
	struct health_engine *engine;
	struct config_pool *pool;
	char expected[64];

	(void)state;
	server_start(&server, SERVE_TLS, ip(127, 0, 0, 1), 0, pki.good, 0);
	atomic_store(&server.stall, true);
	pool = fixture_single(&fixture, CONFIG_HEALTH_TLS, &server);
	pool->health.timeout_ms = ms(150);
	pool->health.interval_ms = ms(200);
	pool->health.fall = 1;
	engine = engine_new(&fixture.config, &recorder);
	run_for(engine, ms(50));                        /* the first check hangs */
	assert_int_equal(health_engine_backend(engine, 0, 0)->checks, 0);
	assert_int_equal(health_engine_update(engine, &fixture.config), 0);
	run_until_state(engine, 0, 0, HEALTH_DOWN, ms(1000));
	snprintf(expected, sizeof expected, "timeout after %u ms (TLS handshake)", ms(150));
	assert_string_equal(recorder.changes[0].reason, expected);
	assert_int_equal(health_engine_backend(engine, 0, 0)->checks, 1);
	health_engine_destroy(engine);
	server_stop(&server);
}

/* Checks may use a given source address. */
static void
test_checks_use_the_configured_source_address(void **state)
{
	struct server server;
	struct fixture fixture;
	struct recorder recorder;
	struct health_engine *engine;

	(void)state;
	server_start(&server, SERVE_HTTP, ip(127, 0, 0, 1), 0, NULL, 0);
	fixture_single(&fixture, CONFIG_HEALTH_HTTP, &server);
	engine = engine_new(&fixture.config, &recorder);
	health_engine_set_source(engine, ip(127, 0, 0, 9));
	run_until_state(engine, 0, 0, HEALTH_UP, ms(500));
	pthread_mutex_lock(&server.lock);
	assert_int_equal(server.peer, ip(127, 0, 0, 9));
	pthread_mutex_unlock(&server.lock);
	health_engine_destroy(engine);
	server_stop(&server);
}

/* Destroying the engine with checks in flight closes every fd it opened. */
static void
test_destroy_closes_every_fd(void **state)
{
	struct server server;
	struct fixture fixture;
	struct recorder recorder;
	struct health_engine *engine;
	unsigned fds_before;

	(void)state;
	fds_before = open_fd_count();
	server_start(&server, SERVE_TLS, ip(127, 0, 0, 1), 0, pki.good, 0);
	atomic_store(&server.stall, true);
	fixture_single(&fixture, CONFIG_HEALTH_TLS, &server);
	engine = engine_new(&fixture.config, &recorder);
	run_for(engine, ms(20));
	/* the server's 3 + epoll, timer, the check's socket + the server's end */
	assert_true(open_fd_count() >= fds_before + 3 + 3 + 1);
	health_engine_destroy(engine);
	server_stop(&server);                   /* closes the server's end too */
	assert_int_equal(open_fd_count(), fds_before);
}

/* ------------------------------------------------------------------------ */
/* Scale                                                                     */

#define SCALE_BACKENDS 300

/* User + system seconds between two getrusage() samples. */
#define CPU_SECONDS(after, before) \
	((double)((after).ru_utime.tv_sec - (before).ru_utime.tv_sec + \
		  (after).ru_stime.tv_sec - (before).ru_stime.tv_sec) + \
	 (double)((after).ru_utime.tv_usec - (before).ru_utime.tv_usec + \
		  (after).ru_stime.tv_usec - (before).ru_stime.tv_usec) / 1e6)

struct scale_server {
	int fds[SCALE_BACKENDS];
	uint16_t ports[SCALE_BACKENDS];
	int epoll_fd, wake[2];
	pthread_t thread;
};

static void *
scale_server_main(void *argument)
{
	struct scale_server *server = argument;
	struct epoll_event events[64];
	int count, i, fd;

	for (;;) {
		count = epoll_wait(server->epoll_fd, events, 64, -1);
		for (i = 0; i < count; i++) {
			if (events[i].data.fd == server->wake[0])
				return NULL;
			while ((fd = accept4(events[i].data.fd, NULL, NULL, SOCK_NONBLOCK)) >= 0)
				close(fd);
		}
	}
}

static uint32_t
scale_address(unsigned index)
{
	return ip(127, 1, index / 250, index % 250 + 1);
}

/* 300 backends (300 listeners on 127.1.x.y) at 200 ms: all up within the first
 * interval and checked every interval; the CPU time is printed, not judged. */
static void
test_scale_300_backends_at_200_ms(void **state)
{
	static struct scale_server server;
	struct config_backend *backends = calloc(SCALE_BACKENDS, sizeof *backends);
	struct config_pool pool;
	struct config config;
	struct recorder recorder;
	struct health_engine *engine;
	struct epoll_event event = { .events = EPOLLIN };
	struct rusage thread_before, thread_after, process_before, process_after;
	uint64_t checks = 0, min_checks = UINT64_MAX;
	double thread_cpu, process_cpu;
	unsigned i, up = 0;

	(void)state;
	assert_non_null(backends);
	server.epoll_fd = epoll_create1(EPOLL_CLOEXEC);
	assert_int_equal(pipe(server.wake), 0);
	event.data.fd = server.wake[0];
	epoll_ctl(server.epoll_fd, EPOLL_CTL_ADD, server.wake[0], &event);
	for (i = 0; i < SCALE_BACKENDS; i++) {
		server.fds[i] = listen_on(scale_address(i), 0, 64, &server.ports[i]);
		assert_int_equal(fcntl(server.fds[i], F_SETFL, O_NONBLOCK), 0);
		event.data.fd = server.fds[i];
		epoll_ctl(server.epoll_fd, EPOLL_CTL_ADD, server.fds[i], &event);
		snprintf(backends[i].name, sizeof backends[i].name, "be%u", i);
		backends[i].address = scale_address(i);
		backends[i].port = server.ports[i];
		backends[i].weight = 1;
		backends[i].enabled = true;
	}
	assert_int_equal(pthread_create(&server.thread, NULL, scale_server_main, &server), 0);
	memset(&pool, 0, sizeof pool);
	snprintf(pool.name, sizeof pool.name, "scale");
	pool.backend_count = SCALE_BACKENDS;
	pool.backends = backends;
	pool.health = (struct config_health){ .type = CONFIG_HEALTH_TCP, .interval_ms = ms(200),
		.timeout_ms = ms(100), .rise = 1, .fall = 2, .path = "/", .expect_status = 200 };
	memset(&config, 0, sizeof config);
	config.pool_count = 1;
	config.pools = &pool;

	getrusage(RUSAGE_THREAD, &thread_before);
	getrusage(RUSAGE_SELF, &process_before);
	engine = engine_new(&config, &recorder);
	run_for(engine, ms(2000));
	getrusage(RUSAGE_THREAD, &thread_after);
	getrusage(RUSAGE_SELF, &process_after);

	for (i = 0; i < SCALE_BACKENDS; i++) {
		const struct health_backend_state *backend = health_engine_backend(engine, 0, i);

		up += backend->state == HEALTH_UP;
		checks += backend->checks;
		if (backend->checks < min_checks)
			min_checks = backend->checks;
	}
	thread_cpu = CPU_SECONDS(thread_after, thread_before);
	process_cpu = CPU_SECONDS(process_after, process_before);
	print_message("    %u backends, %u ms interval, %u ms: %u up, %llu checks (min %llu per "
		      "backend); engine thread CPU %.3f s (%.1f%% of a core), whole process "
		      "(with the server thread) %.3f s\n",
		      SCALE_BACKENDS, ms(200), ms(2000), up, (unsigned long long)checks,
		      (unsigned long long)min_checks, thread_cpu,
		      100.0 * thread_cpu / (ms(2000) / 1000.0), process_cpu);
	assert_int_equal(up, SCALE_BACKENDS);
	assert_true(min_checks >= 8);
	health_engine_destroy(engine);

	assert_int_equal(write(server.wake[1], "x", 1), 1);
	pthread_join(server.thread, NULL);
	for (i = 0; i < SCALE_BACKENDS; i++)
		close(server.fds[i]);
	close(server.epoll_fd);
	close(server.wake[0]);
	close(server.wake[1]);
	free(backends);
}

/* 20 TLS servers checked at 100 ms for 2 s (TLS 1.3 handshake, chain and
 * name verification, ticket harvest): the engine thread's CPU time per check,
 * printed with what it means for 300 backends at 1 s. */
static void
test_scale_tls_cpu_per_check(void **state)
{
	enum { COUNT = 20 };
	static struct server servers[COUNT];
	struct config_backend *backends = calloc(COUNT, sizeof *backends);
	struct config_pool pool;
	struct config config;
	struct recorder recorder;
	struct health_engine *engine;
	struct rusage before, after;
	uint64_t checks = 0, harvested = 0;
	double cpu;
	unsigned i;

	(void)state;
	assert_non_null(backends);
	for (i = 0; i < COUNT; i++) {
		server_start(&servers[i], SERVE_TLS, ip(127, 0, 2, i + 1), 0, pki.good, 0);
		snprintf(backends[i].name, sizeof backends[i].name, "cp%u", i);
		snprintf(backends[i].fqdn, sizeof backends[i].fqdn, FQDN);
		backends[i].address = servers[i].address;
		backends[i].port = servers[i].port;
	}
	memset(&pool, 0, sizeof pool);
	snprintf(pool.name, sizeof pool.name, "cp");
	pool.backend_count = COUNT;
	pool.backends = backends;
	/* fall 10: this measures CPU per check; a loaded machine (an ASan build
	 * beside other jobs) can take over 50 ms for a handshake now and then,
	 * and two such in a row must not mark a healthy server down */
	pool.health = (struct config_health){ .type = CONFIG_HEALTH_TLS, .interval_ms = ms(100),
		.timeout_ms = ms(50), .rise = 1, .fall = 10, .path = "/", .expect_status = 200 };
	snprintf(pool.health.ca, sizeof pool.health.ca, "%s", pki.ca_file);
	memset(&config, 0, sizeof config);
	config.pool_count = 1;
	config.pools = &pool;

	engine = engine_new(&config, &recorder);
	run_for(engine, ms(300));                       /* warm-up: first handshakes */
	for (i = 0; i < COUNT; i++)
		checks -= health_engine_backend(engine, 0, i)->checks;
	getrusage(RUSAGE_THREAD, &before);
	run_for(engine, ms(2000));
	getrusage(RUSAGE_THREAD, &after);
	for (i = 0; i < COUNT; i++) {
		const struct health_backend_state *backend = health_engine_backend(engine, 0, i);

		assert_int_equal(backend->state, HEALTH_UP);
		checks += backend->checks;
		harvested += backend->ticket_key_name_valid;
	}
	cpu = CPU_SECONDS(after, before);
	print_message("    %u TLS backends at %u ms: %llu checks in %u ms, engine thread CPU "
		      "%.3f s = %.0f us per check (300 backends at 1 s: ~%.0f%% of a core); "
		      "key names harvested: %llu/%u\n",
		      COUNT, ms(100), (unsigned long long)checks, ms(2000), cpu,
		      checks != 0 ? cpu * 1e6 / (double)checks : 0.0,
		      checks != 0 ? 300.0 * cpu / (double)checks * 100.0 : 0.0,
		      (unsigned long long)harvested, COUNT);
	assert_int_equal(harvested, COUNT);
	health_engine_destroy(engine);
	for (i = 0; i < COUNT; i++)
		server_stop(&servers[i]);
	free(backends);
}

int
main(void)
{
	const char *scale = getenv("HEALTH_TEST_TIME_SCALE");
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_backends_start_unknown_and_unchecked_pools_are_up),
		cmocka_unit_test(test_probe_port_follows_the_documented_rule),
		cmocka_unit_test(test_backend_without_a_port_is_down_with_the_reason),
		cmocka_unit_test(test_tcp_check_up_when_a_listener_exists),
		cmocka_unit_test(test_tcp_check_down_after_fall_with_connection_refused),
		cmocka_unit_test(test_tcp_check_times_out_on_a_listener_that_never_accepts),
		cmocka_unit_test(test_tls_check_up_with_right_ca_and_name_reports_days_to_expiry),
		cmocka_unit_test(test_tls_check_down_for_an_expired_certificate),
		cmocka_unit_test(test_tls_check_down_for_a_hostname_mismatch),
		cmocka_unit_test(test_tls_check_down_for_an_untrusted_issuer),
		cmocka_unit_test(test_tls_check_down_when_the_ca_file_is_missing),
		cmocka_unit_test(test_tls_check_down_within_fall_intervals_when_the_server_stops_answering),
		cmocka_unit_test(test_tls_check_harvests_the_ticket_key_name_of_each_server),
		cmocka_unit_test(test_tls_check_keeps_the_key_name_when_the_timeout_cuts_the_ticket_wait),
		cmocka_unit_test(test_tls12_check_harvests_the_ticket_key_name),
		cmocka_unit_test(test_http_check_up_on_200_with_path_and_host),
		cmocka_unit_test(test_http_check_down_on_503_with_the_status_in_the_reason),
		cmocka_unit_test(test_https_check_up_on_200),
		cmocka_unit_test(test_down_backend_comes_up_only_after_rise_successes),
		cmocka_unit_test(test_update_keeps_the_state_of_unchanged_backends),
		cmocka_unit_test(test_update_keeps_a_check_in_flight),
		cmocka_unit_test(test_checks_use_the_configured_source_address),
		cmocka_unit_test(test_destroy_closes_every_fd),
		cmocka_unit_test(test_scale_300_backends_at_200_ms),
		cmocka_unit_test(test_scale_tls_cpu_per_check),
	};

	if (scale != NULL && atoi(scale) > 0)
		time_scale = (unsigned)atoi(scale);
	return cmocka_run_group_tests(tests, pki_setup, pki_teardown);
}
