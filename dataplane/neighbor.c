/*
 * neighbor.c: ARP answering, next-hop resolution with probing and aging, and
 * gratuitous announcements; the policy is described in neighbor.h.
 */
#include "neighbor.h"

#include <string.h>

#include <rte_arp.h>
#include <rte_byteorder.h>
#include <rte_mbuf.h>

#include "pipeline.h"
#include "worker.h"

#define ARP_FRAME_LENGTH 60   /* minimum Ethernet frame, without FCS */

uint16_t
neighbor_find(const struct neighbor_table *table, uint32_t address)
{
	unsigned count = __atomic_load_n(&table->count, __ATOMIC_ACQUIRE);

	for (unsigned i = 0; i < count; i++)
		if (table->entries[i].address == address)
			return (uint16_t)i;
	return NEIGHBOR_NONE;
}

uint16_t
neighbor_add(struct neighbor_table *table, uint32_t address, uint8_t port)
{
	uint16_t index = neighbor_find(table, address);

	if (index != NEIGHBOR_NONE)
		return index;
	if (table->count == NEIGHBOR_MAX)
		return NEIGHBOR_NONE;
	/* The main lcore may append while the worker reads: publish the entry
	 * before the count that makes it visible. */
	unsigned added = table->count;
	table->entries[added] = (struct neighbor){ .address = address, .port = port };
	__atomic_store_n(&table->count, added + 1, __ATOMIC_RELEASE);
	return (uint16_t)added;
}

/* True when `address` is ours to answer for on logical `port`. */
static bool
owns_address(const struct worker *worker, unsigned port, uint32_t address)
{
	if (address == worker->ports[port].address)
		return true;
	/* In one-arm mode both logical ports are the same wire. */
	if (worker->ports[PORT_PUBLIC].port_id == worker->ports[PORT_PRIVATE].port_id &&
	    address == worker->ports[PORT_PRIVATE].address)
		return true;
	return port == PORT_PUBLIC && services_is_vip(worker->services, address);
}

static struct rte_mbuf *
arp_frame(struct worker *worker, unsigned port, uint16_t opcode, uint32_t sender, uint32_t target)
{
	struct rte_mbuf *m = rte_pktmbuf_alloc(worker->mempool);

	if (!m)
		return NULL;
	uint8_t *frame = (uint8_t *)rte_pktmbuf_append(m, ARP_FRAME_LENGTH);
	memset(frame, 0, ARP_FRAME_LENGTH);
	struct rte_ether_hdr *eth = (struct rte_ether_hdr *)frame;
	struct rte_arp_hdr *arp = (struct rte_arp_hdr *)(eth + 1);
	eth->ether_type = rte_cpu_to_be_16(RTE_ETHER_TYPE_ARP);
	arp->arp_hardware = rte_cpu_to_be_16(RTE_ARP_HRD_ETHER);
	arp->arp_protocol = rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV4);
	arp->arp_hlen = RTE_ETHER_ADDR_LEN;
	arp->arp_plen = 4;
	arp->arp_opcode = rte_cpu_to_be_16(opcode);
	arp->arp_data.arp_sha = worker->ports[port].mac;
	arp->arp_data.arp_sip = sender;
	arp->arp_data.arp_tip = target;
	return m;
}

static void
send_request(struct worker *worker, unsigned port, uint32_t sender, uint32_t target)
{
	static const struct rte_ether_addr broadcast = {{ 0xff, 0xff, 0xff, 0xff, 0xff, 0xff }};
	struct rte_mbuf *m = arp_frame(worker, port, RTE_ARP_OP_REQUEST, sender, target);

	/* Announcing hundreds of VIPs fills a queue: send what is there first. */
	if (worker->tx[port].count == PIPELINE_TX_MAX)
		worker_flush(worker);
	if (m)
		pipeline_send(worker, port, m, &broadcast);
}

static void
learn(struct worker *worker, unsigned port, uint32_t address, const struct rte_ether_addr *mac)
{
	uint16_t index = neighbor_find(&worker->neighbors, address);

	if (index == NEIGHBOR_NONE)
		return;   /* only next hops we were configured to reach */
	struct neighbor *neighbor = &worker->neighbors.entries[index];
	if (neighbor->port != port && worker->ports[neighbor->port].port_id != worker->ports[port].port_id)
		return;
	if (neighbor->state != NEIGHBOR_REACHABLE || !rte_is_same_ether_addr(&neighbor->mac, mac))
		worker->stats.arp_learned++;
	neighbor->mac = *mac;
	neighbor->state = NEIGHBOR_REACHABLE;
	neighbor->confirmed = worker->now;
	neighbor->next_probe = worker->now + NEIGHBOR_PROBE_S * worker->hz;
	worker_share_neighbor(worker, index);
}

void
arp_input(struct worker *worker, unsigned port, struct rte_mbuf *m)
{
	struct rte_ether_hdr *eth = rte_pktmbuf_mtod(m, struct rte_ether_hdr *);
	struct rte_arp_hdr *arp = (struct rte_arp_hdr *)(eth + 1);

	if (arp->arp_hardware != rte_cpu_to_be_16(RTE_ARP_HRD_ETHER) ||
	    arp->arp_protocol != rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV4) ||
	    arp->arp_hlen != RTE_ETHER_ADDR_LEN || arp->arp_plen != 4) {
		pipeline_drop(worker, m, PACKET_DROP_ARP_MALFORMED);
		return;
	}
	uint32_t sender = arp->arp_data.arp_sip;
	uint32_t target = arp->arp_data.arp_tip;
	struct rte_ether_addr sender_mac = arp->arp_data.arp_sha;

	learn(worker, port, sender, &sender_mac);
	if (arp->arp_opcode != rte_cpu_to_be_16(RTE_ARP_OP_REQUEST) || sender == target ||
	    !owns_address(worker, port, target)) {
		rte_pktmbuf_free(m);   /* replies, announcements, other hosts' questions */
		return;
	}
	/* Turn the request into the reply in place. */
	arp->arp_opcode = rte_cpu_to_be_16(RTE_ARP_OP_REPLY);
	arp->arp_data.arp_tha = sender_mac;
	arp->arp_data.arp_tip = sender;
	arp->arp_data.arp_sha = worker->ports[port].mac;
	arp->arp_data.arp_sip = target;
	worker->stats.arp_replies_sent++;
	pipeline_send(worker, port, m, &sender_mac);
}

void
neighbor_tick(struct worker *worker, uint64_t now)
{
	uint64_t reachable = NEIGHBOR_REACHABLE_S * worker->hz;

	unsigned count = __atomic_load_n(&worker->neighbors.count, __ATOMIC_ACQUIRE);

	for (unsigned i = 0; i < count; i++) {
		struct neighbor *neighbor = &worker->neighbors.entries[i];
		if (now < neighbor->next_probe)
			continue;
		if (worker->tx[neighbor->port].count >= PIPELINE_TX_MAX / 2)
			continue;   /* leave room for traffic; probe on a later tick */
		if (neighbor->state == NEIGHBOR_REACHABLE && now - neighbor->confirmed > reachable) {
			neighbor->state = NEIGHBOR_INCOMPLETE;
			worker_share_neighbor(worker, (uint16_t)i);
		}
		/* Unresolved: ask five times a second; resolved but old: once a second. */
		neighbor->next_probe = now + (neighbor->state == NEIGHBOR_INCOMPLETE ?
					      worker->hz / 5 : worker->hz);
		send_request(worker, neighbor->port, worker->ports[neighbor->port].address,
			     neighbor->address);
		worker->stats.arp_requests_sent++;
	}
}

void
neighbor_announce(struct worker *worker)
{
	const struct services *services = worker->services;

	for (unsigned i = 0; i < services->vip_count; i++) {
		send_request(worker, PORT_PUBLIC, services->vips[i], services->vips[i]);
		worker->stats.arp_gratuitous_sent++;
	}
	for (unsigned port = 0; port < 2; port++) {
		if (port == PORT_PRIVATE &&
		    worker->ports[PORT_PRIVATE].port_id == worker->ports[PORT_PUBLIC].port_id &&
		    worker->ports[PORT_PRIVATE].address == worker->ports[PORT_PUBLIC].address)
			break;
		send_request(worker, port, worker->ports[port].address, worker->ports[port].address);
		worker->stats.arp_gratuitous_sent++;
	}
}
