/*
 * tcp_options.c: TCP option parsing and in-place rewrites; see tcp_options.h.
 */
#include "tcp_options.h"

#include <string.h>

#include <rte_byteorder.h>

#include "packet.h"

#define TCP_HEADER_LENGTH 20

static uint32_t
load32(const uint8_t *p)
{
	uint32_t value;
	memcpy(&value, p, 4);
	return rte_be_to_cpu_32(value);
}

/*
 * Length of the option at `offset`, NOPs skipped first (*offset moves past
 * them); 0 at the end of the options or at a malformed one (length < 2 or
 * running past the header), where a walk stops.  Inline: a SYN's four or five
 * options cost a call each otherwise.
 */
static inline unsigned
option_length(const uint8_t *tcp, unsigned header_length, unsigned *offset)
{
	unsigned at = *offset;

	while (at < header_length && tcp[at] == TCP_OPTION_NOP)
		at++;
	*offset = at;
	if (at + 1 >= header_length || tcp[at] == TCP_OPTION_END)
		return 0;
	unsigned length = tcp[at + 1];
	return length >= 2 && at + length <= header_length ? length : 0;
}

void
tcp_parse_syn_options(const uint8_t *tcp, unsigned header_length, struct tcp_syn_options *options)
{
	memset(options, 0, sizeof(*options));
	options->wscale = TCP_WSCALE_NONE;
	unsigned offset = TCP_HEADER_LENGTH, length;

	for (; (length = option_length(tcp, header_length, &offset)) != 0; offset += length) {
		unsigned kind = tcp[offset];
		const uint8_t *value = tcp + offset + 2;
		if (kind == TCP_OPTION_MSS && length == 4)
			options->mss = (uint16_t)(value[0] << 8 | value[1]);
		else if (kind == TCP_OPTION_WSCALE && length == 3)
			options->wscale = value[0] > TCP_WSCALE_MAX ? TCP_WSCALE_MAX : value[0];
		else if (kind == TCP_OPTION_SACK_PERM && length == 2)
			options->sack_permitted = true;
		else if (kind == TCP_OPTION_TIMESTAMP && length == 10) {
			options->timestamps = true;
			options->tsval = load32(value);
			options->tsecr = load32(value + 4);
		}
	}
}

void
tcp_find_options(const uint8_t *tcp, unsigned header_length, struct tcp_option_offsets *offsets)
{
	memset(offsets, 0, sizeof(*offsets));
	/* the usual layout of an established segment's options, NOP NOP TS:
	 * nothing else fits after it in 32 bytes of options */
	if (header_length == TCP_HEADER_LENGTH + 12 && tcp[20] == TCP_OPTION_NOP &&
	    tcp[21] == TCP_OPTION_NOP && tcp[22] == TCP_OPTION_TIMESTAMP && tcp[23] == 10) {
		offsets->timestamp = 22;
		return;
	}
	unsigned offset = TCP_HEADER_LENGTH, length;
	for (; (length = option_length(tcp, header_length, &offset)) != 0; offset += length) {
		unsigned kind = tcp[offset];
		if (kind == TCP_OPTION_TIMESTAMP && length == 10)
			offsets->timestamp = (uint8_t)offset;
		else if (kind == TCP_OPTION_SACK && length >= 10 && (length - 2) % 8 == 0) {
			offsets->sack = (uint8_t)offset;
			offsets->sack_blocks = (uint8_t)((length - 2) / 8);
		}
	}
}

unsigned
tcp_write_syn_options(uint8_t *out, const struct tcp_syn_options *options)
{
	unsigned length = 0;

	if (options->mss) {
		out[length++] = TCP_OPTION_MSS;
		out[length++] = 4;
		out[length++] = (uint8_t)(options->mss >> 8);
		out[length++] = (uint8_t)options->mss;
	}
	if (options->timestamps) {
		uint32_t tsval = rte_cpu_to_be_32(options->tsval);
		uint32_t tsecr = rte_cpu_to_be_32(options->tsecr);
		out[length++] = options->sack_permitted ? TCP_OPTION_SACK_PERM : TCP_OPTION_NOP;
		out[length++] = options->sack_permitted ? 2 : TCP_OPTION_NOP;
		out[length++] = TCP_OPTION_TIMESTAMP;
		out[length++] = 10;
		memcpy(out + length, &tsval, 4);
		memcpy(out + length + 4, &tsecr, 4);
		length += 8;
	} else if (options->sack_permitted) {
		out[length++] = TCP_OPTION_NOP;
		out[length++] = TCP_OPTION_NOP;
		out[length++] = TCP_OPTION_SACK_PERM;
		out[length++] = 2;
	}
	if (options->wscale != TCP_WSCALE_NONE) {
		out[length++] = TCP_OPTION_NOP;
		out[length++] = TCP_OPTION_WSCALE;
		out[length++] = 3;
		out[length++] = options->wscale;
	}
	return length;
}

void
tcp_adjust32(uint8_t *field, uint32_t delta, uint16_t *check)
{
	uint32_t old_value, new_value;

	memcpy(&old_value, field, 4);
	new_value = rte_cpu_to_be_32(rte_be_to_cpu_32(old_value) + delta);
	memcpy(field, &new_value, 4);
	checksum_replace32(check, old_value, new_value);
}
