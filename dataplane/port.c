/*
 * port.c: EAL arguments from the config, and port bring-up; see port.h.
 */
#include "port.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <rte_ethdev.h>

#define RX_DESCRIPTORS 1024
#define TX_DESCRIPTORS 1024

static void
add(struct eal_arguments *arguments, const char *value)
{
	if (arguments->count >= PORT_EAL_ARGS_MAX - 1)
		return;
	char *slot = arguments->storage[arguments->count];
	snprintf(slot, sizeof(arguments->storage[0]), "%s", value);
	arguments->values[arguments->count++] = slot;
	arguments->values[arguments->count] = NULL;
}

static bool
is_virtual_device(const char *device)
{
	return strncmp(device, "net_", 4) == 0;
}

/* HugePages_Free from /proc/meminfo; 0 when unreadable. */
static long
free_hugepages(void)
{
	FILE *meminfo = fopen("/proc/meminfo", "r");
	char line[128];
	long pages = 0;

	if (!meminfo)
		return 0;
	while (fgets(line, sizeof(line), meminfo))
		if (sscanf(line, "HugePages_Free: %ld", &pages) == 1)
			break;
	fclose(meminfo);
	return pages;
}

static bool
user_gives(int user_count, char **user, const char *option)
{
	for (int i = 0; i < user_count; i++)
		if (strcmp(user[i], option) == 0 || strncmp(user[i], option, strlen(option)) == 0)
			return true;
	return false;
}

/* af_packet opens one socket per queue pair, in one PACKET_FANOUT group: each
 * worker needs its own pair. */
static void
add_device(struct eal_arguments *arguments, const struct config_port *port, unsigned workers)
{
	char device[CONFIG_DEVICE_MAX + 16];

	snprintf(device, sizeof(device), "%s", port->device);
	if (workers > 1 && strncmp(port->device, "net_af_packet", 13) == 0 &&
	    !strstr(port->device, "qpairs="))
		snprintf(device, sizeof(device), "%s,qpairs=%hhu", port->device,
			 (unsigned char)workers);
	add(arguments, is_virtual_device(port->device) ? "--vdev" : "-a");
	add(arguments, device);
}

int
port_eal_arguments(struct eal_arguments *arguments, const char *program,
		   const struct config *config, int user_count, char **user)
{
	const struct config_port *public_port = &config->dataplane.public_port;
	const struct config_port *private_port = &config->dataplane.private_port;
	bool two_ports = private_port->present && strcmp(private_port->device, public_port->device) != 0;
	char buffer[64];

	memset(arguments, 0, sizeof(*arguments));
	add(arguments, program);
	if (!user_gives(user_count, user, "-l") && !user_gives(user_count, user, "-c") &&
	    !user_gives(user_count, user, "--lcores")) {
		snprintf(buffer, sizeof(buffer), "0-%u", config->dataplane.workers);
		add(arguments, "-l");
		add(arguments, buffer);
	}
	add_device(arguments, public_port, config->dataplane.workers);
	if (two_ports)
		add_device(arguments, private_port, config->dataplane.workers);
	if (is_virtual_device(public_port->device) &&
	    (!two_ports || is_virtual_device(private_port->device)))
		add(arguments, "--no-pci");
	if (free_hugepages() == 0 && !user_gives(user_count, user, "--no-huge")) {
		add(arguments, "--no-huge");
		add(arguments, "-m");
		add(arguments, "512");
		add(arguments, "--no-shconf");
	}
	if (!user_gives(user_count, user, "--file-prefix")) {
		snprintf(buffer, sizeof(buffer), "--file-prefix=tether-%d", (int)getpid());
		add(arguments, buffer);
	}
	for (int i = 0; i < user_count; i++)
		add(arguments, user[i]);
	return arguments->count;
}

int
port_find(const char *device)
{
	char name[RTE_ETH_NAME_MAX_LEN];
	uint16_t port_id;

	/* The device name is what comes before the first comma. */
	snprintf(name, sizeof(name), "%.*s", (int)strcspn(device, ","), device);
	if (rte_eth_dev_get_port_by_name(name, &port_id) != 0)
		return -1;
	return port_id;
}

/* Several queues: spread by RSS over the IP addresses (and ports where the
 * NIC can), whatever subset the device offers.  steer.h hands each frame to
 * its owner whichever queue it arrived on, so the spread need not match. */
static int
configure_queues(uint16_t port_id, uint16_t queues, char *error, size_t error_size)
{
	struct rte_eth_conf configuration = { 0 };
	struct rte_eth_dev_info info;
	int rc;

	if ((rc = rte_eth_dev_info_get(port_id, &info)) < 0) {
		snprintf(error, error_size, "reading device info failed: %s", strerror(-rc));
		return rc;
	}
	if (queues > info.max_rx_queues || queues > info.max_tx_queues) {
		snprintf(error, error_size, "%u workers need %u queue pairs; the device has %u RX "
			 "and %u TX", queues, queues, info.max_rx_queues, info.max_tx_queues);
		return -EINVAL;
	}
	uint64_t hash_fields = RTE_ETH_RSS_IP | RTE_ETH_RSS_TCP | RTE_ETH_RSS_UDP;
	if (queues > 1 && (info.flow_type_rss_offloads & hash_fields)) {
		configuration.rxmode.mq_mode = RTE_ETH_MQ_RX_RSS;
		configuration.rx_adv_conf.rss_conf.rss_hf = info.flow_type_rss_offloads & hash_fields;
	}
	if ((rc = rte_eth_dev_configure(port_id, queues, queues, &configuration)) < 0) {
		snprintf(error, error_size, "configure with %u queues failed: %s", queues, strerror(-rc));
		return rc;
	}
	return 0;
}

int
port_start(uint16_t port_id, uint16_t queues, struct rte_mempool *mempool,
	   struct rte_ether_addr *mac, char *error, size_t error_size)
{
	uint16_t rx_descriptors = RX_DESCRIPTORS, tx_descriptors = TX_DESCRIPTORS;
	int socket = rte_eth_dev_socket_id(port_id);
	int rc;

	if (socket < 0)
		socket = 0;
	if ((rc = configure_queues(port_id, queues, error, error_size)) < 0)
		return rc;
	if ((rc = rte_eth_dev_adjust_nb_rx_tx_desc(port_id, &rx_descriptors, &tx_descriptors)) < 0) {
		snprintf(error, error_size, "descriptor setup failed: %s", strerror(-rc));
		return rc;
	}
	for (uint16_t q = 0; q < queues; q++) {
		if ((rc = rte_eth_rx_queue_setup(port_id, q, rx_descriptors, (unsigned)socket, NULL,
						 mempool)) < 0 ||
		    (rc = rte_eth_tx_queue_setup(port_id, q, tx_descriptors, (unsigned)socket, NULL)) < 0) {
			snprintf(error, error_size, "queue %u setup failed: %s", q, strerror(-rc));
			return rc;
		}
	}
	if ((rc = rte_eth_dev_start(port_id)) < 0) {
		snprintf(error, error_size, "start failed: %s", strerror(-rc));
		return rc;
	}
	if ((rc = rte_eth_macaddr_get(port_id, mac)) < 0) {
		snprintf(error, error_size, "reading the MAC address failed: %s", strerror(-rc));
		return rc;
	}
	return 0;
}

void
port_stop(uint16_t port_id)
{
	rte_eth_dev_stop(port_id);
	rte_eth_dev_close(port_id);
}
