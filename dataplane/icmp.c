/*
 * icmp.c: ICMP, the slow path.
 *
 *  - Echo requests to a VIP (public side) or to a port address are answered.
 *  - Errors (destination unreachable, incl. fragmentation-needed; time
 *    exceeded; parameter problem) quote the header of a packet that caused
 *    them.  When that packet belongs to a tracked flow, the error is relayed
 *    to the other side with both the outer and the quoted headers translated,
 *    so that the host which sent the packet recognises it: this is what makes
 *    path-MTU discovery work through the NAT (a router on the client side
 *    says "fragmentation needed" to the VIP; the backend must hear it).
 * Everything else is dropped and counted.
 */
#include <netinet/in.h>
#include <string.h>

#include <rte_icmp.h>
#include <rte_ip.h>

#include "nat.h"
#include "pipeline.h"

#define ICMP_HEADER_LENGTH 8
#define ICMP_DESTINATION_UNREACHABLE 3
#define ICMP_TIME_EXCEEDED 11
#define ICMP_PARAMETER_PROBLEM 12
#define ICMP_QUOTED_L4_MIN 8   /* RFC 792: the quoted datagram's first 8 bytes */

static bool
is_error_type(uint8_t type)
{
	return type == ICMP_DESTINATION_UNREACHABLE || type == ICMP_TIME_EXCEEDED ||
	       type == ICMP_PARAMETER_PROBLEM;
}

static bool
owns_echo_target(const struct worker *worker, unsigned port, uint32_t address)
{
	return address == worker->ports[PORT_PUBLIC].address ||
	       address == worker->ports[PORT_PRIVATE].address ||
	       (port == PORT_PUBLIC && services_is_vip(worker->services, address));
}

static void
echo_reply(struct worker *worker, unsigned port, struct rte_mbuf *m, const struct packet_info *info)
{
	uint8_t *frame = rte_pktmbuf_mtod(m, uint8_t *);
	uint8_t *ip = frame + info->l3_offset;
	uint8_t *icmp = frame + info->l4_offset;
	struct rte_ether_addr requester;

	/* Swapping the addresses leaves the IP checksum as it was; TTL changes it. */
	nat_store32(ip + NAT_IP_SOURCE, info->destination);
	nat_store32(ip + NAT_IP_DESTINATION, info->source);
	uint16_t check = nat_load16(ip + NAT_IP_CHECKSUM);
	uint16_t old_ttl_word = nat_load16(ip + 8);
	ip[8] = 64;
	checksum_replace16(&check, old_ttl_word, nat_load16(ip + 8));
	nat_store16(ip + NAT_IP_CHECKSUM, check);

	uint16_t old_type_word = nat_load16(icmp);
	icmp[0] = RTE_IP_ICMP_ECHO_REPLY;
	check = nat_load16(icmp + 2);
	checksum_replace16(&check, old_type_word, nat_load16(icmp));
	nat_store16(icmp + 2, check);

	memcpy(&requester, frame + RTE_ETHER_ADDR_LEN, sizeof(requester));
	worker->stats.icmp_echo_replies++;
	pipeline_send(worker, port, m, &requester);
}

/*
 * Translate the quoted packet's address/port at (quoted_address_offset,
 * quoted_port_offset) and the outer address at outer_address_offset, then fix
 * every checksum.  The quoted L4 checksum is updated only when the quote holds
 * it (routers may quote as little as 8 bytes of TCP).
 */
static void
translate_error(uint8_t *ip, uint8_t *icmp, uint32_t icmp_length, uint8_t *quoted_ip,
		uint32_t quoted_length, uint8_t protocol, unsigned quoted_address_offset,
		unsigned quoted_port_offset, unsigned outer_address_offset,
		uint32_t new_address, uint16_t new_port)
{
	uint32_t quoted_header_length = (uint32_t)(quoted_ip[0] & 0x0f) * 4;
	uint8_t *quoted_l4 = quoted_ip + quoted_header_length;
	uint32_t quoted_l4_length = quoted_length - quoted_header_length;
	uint32_t old_address = nat_load32(quoted_ip + quoted_address_offset);
	uint16_t old_port = nat_load16(quoted_l4 + quoted_port_offset);
	uint16_t check;

	check = nat_load16(quoted_ip + NAT_IP_CHECKSUM);
	checksum_replace32(&check, old_address, new_address);
	nat_store16(quoted_ip + NAT_IP_CHECKSUM, check);
	nat_store32(quoted_ip + quoted_address_offset, new_address);

	unsigned l4_check_offset = nat_l4_checksum_offset(protocol);
	if (quoted_l4_length >= l4_check_offset + 2) {
		check = nat_load16(quoted_l4 + l4_check_offset);
		if (protocol == IPPROTO_TCP || check != 0) {
			checksum_replace32(&check, old_address, new_address);
			checksum_replace16(&check, old_port, new_port);
			nat_store16(quoted_l4 + l4_check_offset, check);
		}
	}
	nat_store16(quoted_l4 + quoted_port_offset, new_port);

	check = nat_load16(ip + NAT_IP_CHECKSUM);
	checksum_replace32(&check, nat_load32(ip + outer_address_offset), new_address);
	nat_store16(ip + NAT_IP_CHECKSUM, check);
	nat_store32(ip + outer_address_offset, new_address);

	/* Errors are rare: recompute the ICMP checksum over the whole message. */
	nat_store16(icmp + 2, 0);
	nat_store16(icmp + 2, checksum_compute(icmp, icmp_length));
}

/*
 * A spliced ssl-session flow's backend -> client sequence numbers were moved
 * into the cookie's space; the backend's kernel checks the quoted sequence
 * number against its own window, so move it back (RFC 5927 checks).
 */
static void
unsplice_quoted_sequence(uint8_t *quoted_l4, uint32_t quoted_l4_length, uint32_t delta)
{
	uint32_t old_seq = nat_load32(quoted_l4 + 4);
	uint32_t new_seq = rte_cpu_to_be_32(rte_be_to_cpu_32(old_seq) - delta);

	if (quoted_l4_length >= NAT_TCP_CHECKSUM + 2) {
		uint16_t check = nat_load16(quoted_l4 + NAT_TCP_CHECKSUM);
		checksum_replace32(&check, old_seq, new_seq);
		nat_store16(quoted_l4 + NAT_TCP_CHECKSUM, check);
	}
	nat_store32(quoted_l4 + 4, new_seq);
}

static void
relay_error(struct worker *worker, struct rte_mbuf *m, const struct packet_info *info)
{
	uint8_t *frame = rte_pktmbuf_mtod(m, uint8_t *);
	uint8_t *ip = frame + info->l3_offset;
	uint8_t *icmp = frame + info->l4_offset;
	uint32_t icmp_length = info->l3_length - (info->l4_offset - info->l3_offset);
	uint8_t *quoted = icmp + ICMP_HEADER_LENGTH;
	uint32_t quoted_length = icmp_length - ICMP_HEADER_LENGTH;

	if (icmp_length < ICMP_HEADER_LENGTH + PACKET_IPV4_HEADER_LENGTH + ICMP_QUOTED_L4_MIN ||
	    (quoted[0] >> 4) != 4 || (uint32_t)(quoted[0] & 0x0f) * 4 < PACKET_IPV4_HEADER_LENGTH ||
	    (uint32_t)(quoted[0] & 0x0f) * 4 + ICMP_QUOTED_L4_MIN > quoted_length) {
		pipeline_drop(worker, m, PACKET_DROP_ICMP_TRUNCATED);
		return;
	}
	uint8_t protocol = quoted[9];
	if (protocol != IPPROTO_TCP && protocol != IPPROTO_UDP) {
		pipeline_drop(worker, m, PACKET_DROP_ICMP_UNHANDLED);
		return;
	}
	uint8_t *quoted_l4 = quoted + (quoted[0] & 0x0f) * 4;
	/* The quoted packet went the other way: its reversed tuple is the key. */
	struct flow_key key = {
		nat_load32(quoted + NAT_IP_DESTINATION), nat_load32(quoted + NAT_IP_SOURCE),
		nat_load16(quoted_l4 + NAT_L4_DESTINATION_PORT), nat_load16(quoted_l4 + NAT_L4_SOURCE_PORT),
		protocol, {0}
	};
	uint32_t reference = flow_lookup(&worker->flows, &key);
	if (reference == UINT32_MAX) {
		pipeline_drop(worker, m, PACKET_DROP_ICMP_NO_FLOW);
		return;
	}
	struct flow *flow = flow_at(&worker->flows, reference);
	uint16_t next_hop = (reference & 1) == FLOW_FORWARD ? flow->neighbor :
			    worker->ports[PORT_PUBLIC].gateway_neighbor;
	if (next_hop == NEIGHBOR_NONE || worker->neighbors.entries[next_hop].state != NEIGHBOR_REACHABLE) {
		pipeline_drop(worker, m, PACKET_DROP_NEIGHBOR_UNRESOLVED);
		return;
	}
	worker->stats.icmp_errors_relayed++;
	if ((reference & 1) == FLOW_FORWARD) {
		/* Quoted VIP -> client (our translated reply): tell the backend. */
		if (protocol == IPPROTO_TCP && (flow->splice & SPLICE_ACTIVE))
			unsplice_quoted_sequence(quoted_l4, quoted_length - (uint32_t)(quoted[0] & 0x0f) * 4,
						 flow->sequence_delta);
		translate_error(ip, icmp, icmp_length, quoted, quoted_length, protocol,
				NAT_IP_SOURCE, NAT_L4_SOURCE_PORT, NAT_IP_DESTINATION,
				flow->backend_address, flow->backend_port);
	} else {
		/* Quoted client -> backend (our translated request): tell the client. */
		translate_error(ip, icmp, icmp_length, quoted, quoted_length, protocol,
				NAT_IP_DESTINATION, NAT_L4_DESTINATION_PORT, NAT_IP_SOURCE,
				flow->vip, flow->vip_port);
	}
	pipeline_send_to_neighbor(worker, m, next_hop);
}

void
icmp_input(struct worker *worker, unsigned port, struct rte_mbuf *m, const struct packet_info *info)
{
	uint8_t type = rte_pktmbuf_mtod(m, uint8_t *)[info->l4_offset];

	if (type == RTE_IP_ICMP_ECHO_REQUEST && owns_echo_target(worker, port, info->destination))
		echo_reply(worker, port, m, info);
	else if (is_error_type(type))
		relay_error(worker, m, info);
	else
		pipeline_drop(worker, m, PACKET_DROP_ICMP_UNHANDLED);
}
