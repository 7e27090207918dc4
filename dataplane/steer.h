/*
 * steer.h: which worker owns a frame, when there are several.
 *
 * Every table a connection touches (its flow entries both ways, its binding,
 * its client's source-ip entry, its SYN cookie) belongs to one worker, so the
 * workers share no writes.  Both directions of a connection must therefore
 * reach the same worker, but NAT changes the tuple: RSS spreads the forward
 * frames (client -> VIP) and the replies (backend -> client) by different
 * hashes.  What both directions carry is the client's address: the source of
 * what arrives on the public port, the destination of what arrives on the
 * private port (ICMP errors: the same address inside the quoted header).  The
 * owner is a hash of it; a worker that receives a frame it does not own hands
 * it to the owner through the owner's handoff ring (worker.c).
 *
 * Frames that are not IPv4 (ARP above all) go to worker 0, which keeps the
 * next-hop table and copies every change to the others.
 *
 * Costs: one read of the IPv4 header the pipeline reads next anyway, a
 * multiply and a shift.  A NIC whose RSS hashes only the client's address
 * (source on the public port, destination on the private one) with a
 * redirection table matching steer_slot() would make every handoff vanish;
 * af_packet's fanout and generic RSS leave (N-1)/N of the frames to hand off.
 */
#ifndef TETHER_STEER_H
#define TETHER_STEER_H

#include <stdint.h>

#include <rte_byteorder.h>
#include <rte_ether.h>
#include <rte_icmp.h>
#include <rte_ip.h>
#include <rte_mbuf.h>

/* PORT_PUBLIC / PORT_PRIVATE as in pipeline.h */
#define STEER_PORT_PUBLIC 0

/* Worker of `client` (network order) among `workers`: a multiplicative hash
 * scaled to the range, no division. */
static inline unsigned
steer_slot(uint32_t client, unsigned workers)
{
	uint32_t mixed = rte_be_to_cpu_32(client) * 0x9e3779b1u;

	return (unsigned)(((uint64_t)mixed * workers) >> 32);
}

/* An ICMP error quotes the frame that caused it: the client is the quoted
 * destination when we sent it out of the public port, the quoted source when
 * we sent it to a backend.  Returns 0 (not an error) or the client. */
static inline uint32_t
steer_icmp_client(const struct rte_mbuf *m, const struct rte_ipv4_hdr *ip, unsigned port)
{
	uint32_t header_length = (uint32_t)(ip->version_ihl & 0x0f) * 4;
	uint32_t quoted_at = (uint32_t)sizeof(struct rte_ether_hdr) + header_length +
			     (uint32_t)sizeof(struct rte_icmp_hdr);

	if (rte_pktmbuf_data_len(m) < quoted_at + sizeof(struct rte_ipv4_hdr))
		return 0;
	const struct rte_icmp_hdr *icmp =
		rte_pktmbuf_mtod_offset(m, const struct rte_icmp_hdr *,
					sizeof(struct rte_ether_hdr) + header_length);
	if (icmp->icmp_type != 3 && icmp->icmp_type != 11 && icmp->icmp_type != 12)
		return 0;
	const struct rte_ipv4_hdr *quoted =
		rte_pktmbuf_mtod_offset(m, const struct rte_ipv4_hdr *, quoted_at);
	return port == STEER_PORT_PUBLIC ? quoted->dst_addr : quoted->src_addr;
}

/* The worker that owns frame `m` received on logical `port`. */
static inline unsigned
steer_owner(const struct rte_mbuf *m, unsigned port, unsigned workers)
{
	const struct rte_ether_hdr *eth = rte_pktmbuf_mtod(m, const struct rte_ether_hdr *);

	if (unlikely(rte_pktmbuf_data_len(m) < sizeof(*eth) + sizeof(struct rte_ipv4_hdr) ||
		     eth->ether_type != RTE_BE16(RTE_ETHER_TYPE_IPV4)))
		return 0;
	const struct rte_ipv4_hdr *ip = (const struct rte_ipv4_hdr *)(eth + 1);
	uint32_t client = port == STEER_PORT_PUBLIC ? ip->src_addr : ip->dst_addr;
	if (unlikely(ip->next_proto_id == IPPROTO_ICMP)) {
		uint32_t quoted_client = steer_icmp_client(m, ip, port);
		if (quoted_client)
			client = quoted_client;
	}
	return steer_slot(client, workers);
}

#endif /* TETHER_STEER_H */
