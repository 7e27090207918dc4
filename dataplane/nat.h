/*
 * nat.h: the NAT rewrites, in both directions, with incremental checksum
 * updates (RFC 1624): a rewrite touches an address, a port and the two
 * checksums, never the payload, so its cost does not depend on packet size.
 *
 * Fields are read and written by offset with memcpy: the DPDK header structs
 * are packed, and the compiler turns these into plain loads and stores.
 * Static inline: these run once per packet.
 */
#ifndef TETHER_NAT_H
#define TETHER_NAT_H

#include <stdint.h>
#include <string.h>

#include <netinet/in.h>

#include "packet.h"

#define NAT_IP_CHECKSUM   10
#define NAT_IP_SOURCE     12
#define NAT_IP_DESTINATION 16
#define NAT_L4_SOURCE_PORT 0
#define NAT_L4_DESTINATION_PORT 2
#define NAT_TCP_CHECKSUM  16
#define NAT_UDP_CHECKSUM  6

static inline uint16_t nat_load16(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return v; }
static inline uint32_t nat_load32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static inline void nat_store16(uint8_t *p, uint16_t v) { memcpy(p, &v, 2); }
static inline void nat_store32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }

/* Offset of the L4 checksum in a TCP or UDP header. */
static inline unsigned
nat_l4_checksum_offset(uint8_t protocol)
{
	return protocol == IPPROTO_TCP ? NAT_TCP_CHECKSUM : NAT_UDP_CHECKSUM;
}

/*
 * Replace the address at ip + address_offset and the port at l4 + port_offset,
 * updating the IPv4 header checksum and the TCP/UDP checksum (whose pseudo
 * header covers the addresses).  A UDP checksum of 0 means "none" and stays 0;
 * an updated UDP checksum that folds to 0 is sent as 0xffff (RFC 768).
 */
static inline void
nat_rewrite(uint8_t *ip, uint8_t *l4, uint8_t protocol, unsigned address_offset,
	    unsigned port_offset, uint32_t new_address, uint16_t new_port)
{
	uint32_t old_address = nat_load32(ip + address_offset);
	uint16_t old_port = nat_load16(l4 + port_offset);
	/* the address is in both checksums (the L4 one through its pseudo header) */
	uint32_t address_delta = checksum_delta32(old_address, new_address);

	nat_store16(ip + NAT_IP_CHECKSUM, checksum_apply(nat_load16(ip + NAT_IP_CHECKSUM), address_delta));
	nat_store32(ip + address_offset, new_address);

	uint8_t *l4_check = l4 + nat_l4_checksum_offset(protocol);
	uint16_t check = nat_load16(l4_check);
	if (protocol == IPPROTO_TCP || check != 0) {
		check = checksum_apply(check, address_delta + checksum_delta16(old_port, new_port));
		if (protocol == IPPROTO_UDP && check == 0)
			check = 0xffff;
		nat_store16(l4_check, check);
	}
	nat_store16(l4 + port_offset, new_port);
}

/* Client -> VIP:port becomes client -> backend:port. */
static inline void
nat_to_backend(uint8_t *frame, const struct packet_info *info,
	       uint32_t backend_address, uint16_t backend_port)
{
	nat_rewrite(frame + info->l3_offset, frame + info->l4_offset, info->protocol,
		    NAT_IP_DESTINATION, NAT_L4_DESTINATION_PORT, backend_address, backend_port);
}

/* Backend:port -> client becomes VIP:port -> client. */
static inline void
nat_to_client(uint8_t *frame, const struct packet_info *info, uint32_t vip, uint16_t vip_port)
{
	nat_rewrite(frame + info->l3_offset, frame + info->l4_offset, info->protocol,
		    NAT_IP_SOURCE, NAT_L4_SOURCE_PORT, vip, vip_port);
}

#endif /* TETHER_NAT_H */
