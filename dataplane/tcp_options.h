/*
 * tcp_options.h: read and rewrite the TCP options the SYN proxy and the splice
 * care about: MSS, window scale, SACK-permitted, timestamps, SACK blocks.
 *
 * Parsing is bounds-checked and tolerant (an option running past the header
 * ends the walk; unknown kinds are skipped by length).  Rewrites change values
 * in place and keep the TCP checksum right incrementally; they never add or
 * remove bytes, so the header length never changes on the hot path.
 */
#ifndef TETHER_TCP_OPTIONS_H
#define TETHER_TCP_OPTIONS_H

#include <stdbool.h>
#include <stdint.h>

#define TCP_OPTION_END        0
#define TCP_OPTION_NOP        1
#define TCP_OPTION_MSS        2
#define TCP_OPTION_WSCALE     3
#define TCP_OPTION_SACK_PERM  4
#define TCP_OPTION_SACK       5
#define TCP_OPTION_TIMESTAMP  8

#define TCP_WSCALE_NONE       0xff
#define TCP_WSCALE_MAX        14

/* What a SYN offered (or a SYN-ACK accepted). */
struct tcp_syn_options {
	uint16_t mss;              /* 0: none given */
	uint8_t wscale;            /* TCP_WSCALE_NONE: none given */
	bool sack_permitted;
	bool timestamps;
	uint32_t tsval, tsecr;     /* host order */
};

/* Offsets (from the TCP header start) of the options in one segment; 0 = absent. */
struct tcp_option_offsets {
	uint8_t timestamp;         /* offset of the kind byte */
	uint8_t sack;
	uint8_t sack_blocks;       /* number of SACK blocks */
};

/* Parse the options of a SYN or SYN-ACK; `tcp` points at the TCP header and
 * `header_length` is its data offset in bytes (already validated). */
void tcp_parse_syn_options(const uint8_t *tcp, unsigned header_length,
			   struct tcp_syn_options *options);

/* Locate the timestamp and SACK options of any segment. */
void tcp_find_options(const uint8_t *tcp, unsigned header_length,
		      struct tcp_option_offsets *offsets);

/*
 * Write the options of a SYN or SYN-ACK we originate, in Linux's order
 * (MSS, SACK-permitted + timestamps or NOPs, window scale), only those set in
 * `options`.  Returns the length written (a multiple of 4, at most 20).
 */
unsigned tcp_write_syn_options(uint8_t *out, const struct tcp_syn_options *options);

/* Add `delta` to a 32-bit big-endian field at `field`, fixing `check`. */
void tcp_adjust32(uint8_t *field, uint32_t delta, uint16_t *check);

#endif /* TETHER_TCP_OPTIONS_H */
