/*
 * config.h: tether's configuration model, shared by tether-dataplane,
 * tether-control, the tests and the fuzzers.
 *
 * The loader is a pure function from bytes to a result: config_parse() takes a
 * JSON document and either fills a struct config or returns every validation
 * error, each naming the JSON path it is about ("$.services[2].vip").  It never
 * exits, never prints and never touches the running state, so a daemon that
 * reloads can refuse a bad file whole and keep what it runs.
 *
 * The structs are flat "what the file says" records (relayd's *_config habit);
 * runtime tables built from them live in the dataplane (services.c).
 */
#ifndef TETHER_CONFIG_H
#define TETHER_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdint.h>

#define CONFIG_NAME_MAX      64     /* names of services, pools, backends; incl. NUL */
#define CONFIG_DEVICE_MAX    256    /* DPDK device string or PCI address; incl. NUL */
#define CONFIG_FQDN_MAX      256
#define CONFIG_PATH_MAX      256    /* filesystem paths (sockets, CA files) */
#define CONFIG_HTTP_PATH_MAX 256
#define CONFIG_SERVICES_MAX  256
#define CONFIG_POOLS_MAX     256
#define CONFIG_BACKENDS_MAX  1024   /* per pool */
#define CONFIG_ALLOW_MAX     64     /* allow_from prefixes per service */
#define CONFIG_WORKERS_MAX   8      /* worker lcores; each owns the clients steer.h gives it */
#define CONFIG_ERRORS_MAX    64     /* errors reported per document; the rest are counted */

/* An IPv4 prefix; addresses are in host byte order throughout the config. */
struct config_prefix {
	uint32_t address;
	uint8_t length;                 /* 0..32; address has no bits set past it */
};

struct config_port {
	bool present;
	char device[CONFIG_DEVICE_MAX]; /* "net_af_packet0,iface=tl-lb-pub" or "0000:3b:00.0" */
	uint32_t address;               /* the port's own IPv4 address */
	uint8_t prefix_length;
	uint32_t gateway;               /* 0 when none */
};

struct config_dataplane {
	unsigned workers;               /* default 1 */
	struct config_port public_port;  /* "ports.public", required */
	struct config_port private_port; /* "ports.private", optional: absent = one-arm */
	uint32_t flow_capacity;          /* "flows.capacity", default 65536 */
	uint32_t tcp_syn_timeout_s;      /* default 30 */
	uint32_t tcp_established_timeout_s; /* default 900 */
	uint32_t tcp_fin_timeout_s;      /* default 60 */
	uint32_t tcp_close_timeout_s;    /* default 10 */
	uint32_t udp_timeout_s;          /* default 300 */
	uint32_t session_capacity;       /* "sessions.capacity", default 65536 */
	uint32_t maglev_table_size;      /* "maglev.table_size", prime, default 65537 */
	uint32_t binding_capacity;       /* "binding.capacity": ssl-session connections being
					  * inspected at once, default 1024 (about 22 KB each) */
	uint32_t inspect_timeout_ms;     /* "binding.inspect_timeout_ms", default 3000 */
	/* "overload": when a worker's SYNs answer with cookies for services on
	 * syn_cookies auto, and when it refuses new connections outright */
	uint32_t overload_half_open;     /* "half_open": handshakes pending, default 1024 */
	uint32_t overload_cookie_percent; /* "syn_cookie_percent": flows or mbufs, default 75 */
	uint32_t overload_refuse_percent; /* "refuse_percent": flows or mbufs, default 95 */
	uint32_t idle_sleep_us;          /* "idle_sleep_us": sleep when a poll finds nothing;
					  * 0 (default) = busy-poll, as on bare metal */
};

struct config_control {
	char socket[CONFIG_PATH_MAX];    /* default "/run/tether/control.sock" */
	char metrics[CONFIG_PATH_MAX];   /* "host:port", default "127.0.0.1:9469" */
};

enum config_protocol { CONFIG_PROTO_TCP, CONFIG_PROTO_UDP };

enum config_persistence_mode {
	CONFIG_PERSIST_NONE,
	CONFIG_PERSIST_SOURCE_IP,
	CONFIG_PERSIST_SSL_SESSION,
};

enum config_fallback {
	CONFIG_FALLBACK_SOURCE_IP,       /* default */
	CONFIG_FALLBACK_SOURCE_IP_SNI,
	CONFIG_FALLBACK_NONE,
};

struct config_persistence {
	enum config_persistence_mode mode;  /* default none */
	enum config_fallback fallback;      /* ssl-session only */
	uint32_t timeout_s;                 /* default 3600 */
	uint8_t source_prefix_length;       /* "source_prefix", default 32 */
};

/* When a plain TCP service answers SYNs with cookies instead of creating a
 * flow per SYN (ssl-session services always do). */
enum config_syn_cookies {
	CONFIG_SYN_COOKIES_AUTO,         /* default: only when the worker is under pressure */
	CONFIG_SYN_COOKIES_ALWAYS,
	CONFIG_SYN_COOKIES_NEVER,
};

struct config_service {
	char name[CONFIG_NAME_MAX];
	uint32_t vip;
	uint16_t port;
	enum config_protocol protocol;      /* default tcp */
	unsigned pool;                      /* index into config.pools */
	uint16_t target_port;               /* 0: use the backend's port */
	struct config_persistence persistence;
	enum config_syn_cookies syn_cookies;
	unsigned allow_count;               /* 0: everyone allowed */
	struct config_prefix allow_from[CONFIG_ALLOW_MAX];
};

struct config_backend {
	char name[CONFIG_NAME_MAX];
	uint32_t address;
	uint16_t port;                      /* 0: the service's target_port or port */
	uint16_t weight;                    /* default 1, 0..1000; 0 = no new flows */
	bool enabled;                       /* default true */
	char fqdn[CONFIG_FQDN_MAX];         /* "" when not given */
};

enum config_health_type {
	CONFIG_HEALTH_NONE, CONFIG_HEALTH_TCP, CONFIG_HEALTH_TLS,
	CONFIG_HEALTH_HTTP, CONFIG_HEALTH_HTTPS,
};

struct config_health {
	enum config_health_type type;       /* default none (always healthy) */
	uint32_t interval_ms;               /* default 1000 */
	uint32_t timeout_ms;                /* default 500, must be < interval */
	uint32_t rise;                      /* default 2 */
	uint32_t fall;                      /* default 3 */
	char ca[CONFIG_PATH_MAX];           /* tls/https: CA file, "" = system store */
	char path[CONFIG_HTTP_PATH_MAX];    /* http/https: default "/" */
	uint16_t expect_status;             /* http/https: default 200 */
	uint16_t port;                      /* port probed; 0: the backend's port, else the
	                                     * first service using the pool decides */
};

struct config_pool {
	char name[CONFIG_NAME_MAX];
	unsigned backend_count;
	struct config_backend *backends;    /* backend_count entries */
	struct config_health health;
};

struct config {
	struct config_dataplane dataplane;
	struct config_control control;
	unsigned service_count;
	struct config_service *services;
	unsigned pool_count;
	struct config_pool *pools;
};

struct config_error {
	char path[192];                     /* JSON path, "$.pools.cp.backends[1].address" */
	char message[192];
};

struct config_errors {
	unsigned count;                     /* how many were found, may exceed CONFIG_ERRORS_MAX */
	struct config_error errors[CONFIG_ERRORS_MAX];
};

/*
 * Parse and validate a JSON document of `length` bytes (need not be NUL-terminated).
 * Returns 0 and fills `out` (release it with config_free()), or -EINVAL with
 * `errors` holding every problem found, `out` left empty.  Pure: no I/O, no exit.
 */
int config_parse(const char *text, size_t length, struct config *out,
		 struct config_errors *errors);

/* Read `file` and config_parse() it; an unreadable file is one error at path "$". */
int config_load_file(const char *file, struct config *out, struct config_errors *errors);

/* Print every error as "FILE: $.path: message", one per line (and a count of
 * those past CONFIG_ERRORS_MAX) to `out`.  For the daemons' --check. */
void config_print_errors(FILE *out, const char *file, const struct config_errors *errors);

/* Release what config_parse() allocated; safe on a zeroed or already freed config. */
void config_free(struct config *config);

/* Look up a pool by name; returns its index or -1. */
int config_pool_index(const struct config *config, const char *name);

/* Parse "a.b.c.d" or "a.b.c.d/len" (host byte order).  0 on success, -EINVAL otherwise. */
int config_parse_ipv4(const char *text, uint32_t *address);
int config_parse_prefix(const char *text, struct config_prefix *prefix);

/* Format an IPv4 address (host order) into `buffer` (at least 16 bytes); returns buffer. */
const char *config_format_ipv4(uint32_t address, char *buffer);

const char *config_persistence_mode_name(enum config_persistence_mode mode);

#endif /* TETHER_CONFIG_H */
