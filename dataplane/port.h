/*
 * port.h: bring DPDK ports up from config device strings, and build the EAL
 * argument list from the config (vdevs, PCI allow-list, memory mode).
 */
#ifndef TETHER_PORT_H
#define TETHER_PORT_H

#include <stdint.h>

#include "config.h"

struct rte_mempool;
struct rte_ether_addr;

#define PORT_EAL_ARGS_MAX 64

struct eal_arguments {
	int count;
	char *values[PORT_EAL_ARGS_MAX];
	char storage[PORT_EAL_ARGS_MAX][CONFIG_DEVICE_MAX + 16];
};

/*
 * EAL arguments for `config`: "-l 0-N" (main + N workers), a --vdev for each
 * virtual device (net_af_packet..., net_af_xdp...; af_packet gets qpairs=N
 * when it has no qpairs of its own) or -a for each PCI address,
 * --no-pci when every device is virtual (so the dataplane never grabs a NIC it
 * was not given), and, when no hugepages are free, --no-huge -m 512
 * --no-shconf.  A unique --file-prefix.  `user` arguments (after "--" on the
 * command line) are appended and win where they repeat an option.
 */
int port_eal_arguments(struct eal_arguments *arguments, const char *program,
		       const struct config *config, int user_count, char **user);

/* The DPDK port id of `device` ("net_af_packet0,iface=x" or "0000:3b:00.0"),
 * or -1 when EAL did not create it. */
int port_find(const char *device);

/* Configure `queues` RX and TX queues (one pair per worker; RSS spreads the
 * frames when there are several), start the port, read its MAC.  Returns 0 or
 * a negative errno; `error` gets a sentence saying what failed. */
int port_start(uint16_t port_id, uint16_t queues, struct rte_mempool *mempool,
	       struct rte_ether_addr *mac, char *error, size_t error_size);

void port_stop(uint16_t port_id);

#endif /* TETHER_PORT_H */
