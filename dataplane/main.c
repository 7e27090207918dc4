/*
 * main.c: tether-dataplane.  Reads and validates the config, starts EAL with
 * arguments derived from it, brings up the ports, builds the runtime tables,
 * launches the worker lcore and serves dataplane.sock on the main lcore until
 * SIGINT or SIGTERM.  Only this file may exit the process.
 */
#include <errno.h>
#include <limits.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <rte_byteorder.h>
#include <rte_cycles.h>
#include <rte_eal.h>
#include <rte_ethdev.h>
#include <rte_launch.h>
#include <rte_lcore.h>
#include <rte_log.h>
#include <rte_mbuf.h>

#include "api.h"
#include "config.h"
#include "port.h"
#include "reload.h"
#include "telemetry.h"
#include "services.h"
#include "worker.h"

#define DEFAULT_SOCKET "/run/tether/dataplane.sock"
#define MBUF_PER_WORKER 16384  /* RX and TX rings of both ports, handoff, caches */
#define MBUF_CACHE     256

static int logtype;
#define LOG(level, ...) rte_log(RTE_LOG_ ## level, logtype, "tether: " __VA_ARGS__)

static volatile sig_atomic_t stop_requested;

static void
on_signal(int signal_number)
{
	(void)signal_number;
	stop_requested = 1;
}

static void
usage(FILE *out)
{
	fprintf(out,
		"usage: tether-dataplane --config FILE [--socket PATH] [-- EAL ARGS...]\n"
		"\n"
		"The tether fast path: DPDK ports, NAT to backends, flow tracking, persistence.\n"
		"\n"
		"  -c, --config FILE   JSON configuration (see docs/configuration.md); required\n"
		"  -s, --socket PATH   control socket, JSON lines (default " DEFAULT_SOCKET ")\n"
		"      --check         validate the config, print every error, exit 0 or 1\n"
		"  -h, --help          this text\n"
		"\n"
		"EAL arguments are derived from the config: a --vdev per virtual device\n"
		"(net_af_packet..., net_af_xdp...) or -a per PCI address, -l 0-N (main lcore\n"
		"+ the config's N workers), and --no-huge -m 512 --no-shconf when no\n"
		"hugepages are free.\n"
		"Anything after -- is passed to EAL as well (e.g. -- -l 2,3).\n"
		"\n"
		"Examples:\n"
		"  tether-dataplane --config /etc/tether/tether.json\n"
		"  tether-dataplane --config config/lab.json --socket /run/tether/dp.sock\n"
		"  echo '{\"command\":\"stats\"}' | socat - UNIX-CONNECT:" DEFAULT_SOCKET "\n");
}

/* Fill a logical port from its config and the started DPDK port. */
static int
open_port(struct dataplane_port *port, const struct config_port *conf, uint16_t queues,
	  struct rte_mempool *mempool)
{
	char error[256];
	int port_id = port_find(conf->device);

	if (port_id < 0) {
		LOG(ERR, "device '%s': EAL created no such port (is the interface there?)\n", conf->device);
		return -ENODEV;
	}
	port->port_id = (uint16_t)port_id;
	port->address = rte_cpu_to_be_32(conf->address);
	port->netmask = conf->prefix_length ? rte_cpu_to_be_32(~0u << (32 - conf->prefix_length)) : 0;
	port->gateway_neighbor = NEIGHBOR_NONE;
	if (port_start(port->port_id, queues, mempool, &port->mac, error, sizeof(error)) < 0) {
		LOG(ERR, "device '%s': %s\n", conf->device, error);
		return -EIO;
	}
	return 0;
}

struct options {
	const char *config_file;
	const char *socket_path;
	int check_only;
	int eal_count;
	char **eal;
};

static int
parse_options(int argc, char **argv, struct options *options)
{
	static const struct option long_options[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "socket", required_argument, NULL, 's' },
		{ "check", no_argument, NULL, 'k' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int option;

	*options = (struct options){ .socket_path = DEFAULT_SOCKET };
	while ((option = getopt_long(argc, argv, "c:s:h", long_options, NULL)) != -1) {
		switch (option) {
		case 'c': options->config_file = optarg; break;
		case 's': options->socket_path = optarg; break;
		case 'k': options->check_only = 1; break;
		case 'h': usage(stdout); exit(0);
		default: usage(stderr); return -1;
		}
	}
	if (!options->config_file) {
		fprintf(stderr, "tether-dataplane: --config FILE is required\n\n");
		usage(stderr);
		return -1;
	}
	options->eal_count = argc - optind;
	options->eal = argv + optind;
	return 0;
}

int
main(int argc, char **argv)
{
	static struct dataplane_state state;
	static struct config_errors errors;
	static struct worker workers[CONFIG_WORKERS_MAX];
	unsigned worker_lcores[CONFIG_WORKERS_MAX];
	unsigned worker_count = 0;
	struct config *config = &state.config;
	static struct eal_arguments eal;
	struct dataplane_port ports[2];
	struct options options;
	struct api api = { .listen_fd = -1 };
	char error[256];
	int exit_code = 1;

	if (parse_options(argc, argv, &options) < 0)
		return 2;
	if (config_load_file(options.config_file, config, &errors) < 0) {
		config_print_errors(stderr, options.config_file, &errors);
		return 1;
	}
	if (options.check_only) {
		printf("%s: OK (%u services, %u pools)\n", options.config_file,
		       config->service_count, config->pool_count);
		config_free(config);
		return 0;
	}
	/* reloads name the file again; keep its absolute path */
	char absolute[PATH_MAX];
	const char *file = realpath(options.config_file, absolute) ? absolute : options.config_file;
	if (strlen(file) >= sizeof(state.config_file)) {
		fprintf(stderr, "tether-dataplane: config path longer than %zu bytes: %s\n",
			sizeof(state.config_file) - 1, file);
		config_free(config);
		return 1;
	}
	memcpy(state.config_file, file, strlen(file) + 1);

	port_eal_arguments(&eal, argv[0], config, options.eal_count, options.eal);
	if (rte_eal_init(eal.count, eal.values) < 0) {
		fprintf(stderr, "tether-dataplane: EAL init failed: %s\n", rte_strerror(rte_errno));
		return 1;
	}
	logtype = rte_log_register_type_and_pick_level("tether.dataplane", RTE_LOG_INFO);
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);

	unsigned workers_wanted = config->dataplane.workers;
	for (unsigned lcore = rte_get_next_lcore(-1, 1, 0);
	     lcore < RTE_MAX_LCORE && worker_count < workers_wanted;
	     lcore = rte_get_next_lcore(lcore, 1, 0))
		worker_lcores[worker_count++] = lcore;
	if (worker_count < workers_wanted) {
		LOG(ERR, "need %u lcores (main + %u workers), EAL has %u; give EAL -l with more cores\n",
		    workers_wanted + 1, workers_wanted, rte_lcore_count());
		goto out;
	}
	struct rte_mempool *mempool = rte_pktmbuf_pool_create("mbufs",
							       MBUF_PER_WORKER * worker_count - 1,
							       MBUF_CACHE, 0, RTE_MBUF_DEFAULT_BUF_SIZE,
							       (int)rte_socket_id());
	if (!mempool) {
		LOG(ERR, "mbuf pool: %s\n", rte_strerror(rte_errno));
		goto out;
	}
	if (open_port(&ports[PORT_PUBLIC], &config->dataplane.public_port, (uint16_t)worker_count,
		      mempool) < 0)
		goto out;
	if (config->dataplane.private_port.present &&
	    strcmp(config->dataplane.private_port.device, config->dataplane.public_port.device) != 0) {
		if (open_port(&ports[PORT_PRIVATE], &config->dataplane.private_port,
			      (uint16_t)worker_count, mempool) < 0)
			goto out;
	} else {
		/* one-arm: the private side is the public port */
		ports[PORT_PRIVATE] = ports[PORT_PUBLIC];
		if (config->dataplane.private_port.present) {
			const struct config_port *conf = &config->dataplane.private_port;
			ports[PORT_PRIVATE].address = rte_cpu_to_be_32(conf->address);
			ports[PORT_PRIVATE].netmask = conf->prefix_length ?
				rte_cpu_to_be_32(~0u << (32 - conf->prefix_length)) : 0;
		}
	}
	for (unsigned w = 0; w < worker_count; w++) {
		if (worker_init(&workers[w], w, config, NULL, mempool, ports, error, sizeof(error)) < 0) {
			LOG(ERR, "worker %u: %s\n", w, error);
			goto out;
		}
	}
	static struct worker *worker_pointers[CONFIG_WORKERS_MAX];
	for (unsigned w = 0; w < worker_count; w++)
		worker_pointers[w] = &workers[w];
	if (worker_link(worker_pointers, worker_count, error, sizeof(error)) < 0) {
		LOG(ERR, "%s\n", error);
		goto out;
	}
	state.workers = workers;
	state.worker_count = worker_count;
	if (reload_initial(&state, error, sizeof(error)) < 0) {
		LOG(ERR, "%s\n", error);
		goto out;
	}
	if (telemetry_register(&state) < 0)
		LOG(WARNING, "rte_telemetry commands not registered; dataplane.sock still serves stats\n");
	api.state = &state;
	api.workers = workers;
	api.worker_count = worker_count;
	api.started_tsc = rte_rdtsc();
	if (api_open(&api, options.socket_path, error, sizeof(error)) < 0) {
		LOG(ERR, "%s\n", error);
		goto out;
	}

	for (unsigned w = 0; w < worker_count; w++)
		rte_eal_remote_launch(worker_main, &workers[w], worker_lcores[w]);
	LOG(INFO, "forwarding: %u services, %u pools, %u backends; %u worker(s) from lcore %u; "
	    "socket %s\n", state.services->service_count, state.services->pool_count,
	    state.services->backend_count, worker_count, worker_lcores[0], options.socket_path);
	while (!stop_requested)
		api_poll(&api, 100);
	LOG(INFO, "stopping\n");
	worker_stop = true;
	rte_eal_mp_wait_lcore();
	exit_code = 0;
out:
	api_close(&api);
	uint16_t port_id;
	RTE_ETH_FOREACH_DEV(port_id)
		port_stop(port_id);
	for (unsigned w = 0; w < worker_count; w++)
		worker_free(&workers[w]);
	reload_free(&state);
	rte_eal_cleanup();
	return exit_code;
}
