/*
 * flood.c: tether-flood, the lab's bounded frame generator for the reliability
 * tests.  It writes Ethernet frames straight onto one interface (AF_PACKET,
 * sendmmsg batches), addressed to one MAC, so that nothing between it and the
 * dataplane (a kernel router would) checks or repairs them.
 *
 *   syn     TCP SYNs to --target from random addresses of --sources and random
 *           ports and sequence numbers (a SYN flood)
 *   ack     bare ACKs with random sequence and acknowledgment numbers (forged
 *           SYN-cookie answers)
 *   frames  the frames of --frames FILE (lines "label hex-after-the-MACs"),
 *           round-robin (a malformed-frame storm)
 *   stall   connections that complete the handshake with the dataplane's SYN
 *           cookie, send part of a TLS ClientHello, then stall (the "stalled
 *           half-sent hellos" attack on delayed binding)
 *
 * Every run is bounded: --count frames (for stall: connections) at most --rate
 * per second, and --seconds at most.  With --settle SOCKET it waits, every
 * --batch frames, until the dataplane has counted as many frames as were sent
 * (drops_total for kind frames, public rx_packets otherwise), so a full
 * af_packet ring never loses frames the test counts.  Prints one JSON line:
 * {"sent", "seconds", "by_label"}.  Lab use only: the caller runs it inside a
 * lab namespace, on a lab veth.
 *
 * Kind stall, per connection: a SYN from a random address of --sources and a
 * port of that address not used before in the run (so no two connections of
 * a run share a 4-tuple), with only an MSS option; the dataplane's SYN-ACK
 * (the cookie) comes back on the same socket, since the dataplane sends it to
 * the MAC of the interface we write from (a BPF filter keeps only TCP from
 * --target); it is answered by one segment, ACK + the first --hello-bytes of a
 * ClientHello whose record header announces 512 bytes, and then nothing more.
 * ACK and hello travel together so that the dataplane counts each connection
 * once: a binding started, or refused when all are busy (a bare ACK refused
 * and then the hello would be two refusals).  Connections waiting for their
 * SYN-ACK are bounded: slot n % --pending holds connection n, so a new SYN
 * gives up the oldest still waiting, and a SYN-ACK later than --give-up-ms is
 * not answered.  The slot is in the ISN (slot << 16 | random), so an answer
 * finds its connection without a search.  After the last SYN it listens for up
 * to --give-up-ms more.  The report adds: syns (= sent), synacks, hellos,
 * hellos_acked (the dataplane acknowledged the hello bytes: it holds a
 * binding), resets (RSTs from the target: a backend reset a placed
 * connection), gave_up, receive_drops (frames the kernel dropped on our
 * socket) and last_hello_s (when the last hello left, from the start).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <linux/filter.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define FRAME_MAX   1600
#define BATCH_MAX   64
#define LABELS_MAX  64
#define FRAMES_MAX  1024
#define PENDING_MAX 65536     /* the slot is the ISN's top 16 bits */
#define HELLO_SIZE  517       /* the record header's 5 bytes + the 512 it announces */
#define PORTS_PER_SOURCE 64000 /* source ports 1024..65023 */

enum kind { KIND_SYN, KIND_ACK, KIND_FRAMES, KIND_STALL };

struct options {
	enum kind kind;
	const char *interface, *frames_file, *settle_socket;
	uint8_t destination_mac[6];
	uint32_t sources, source_count;      /* host order: first address, how many */
	uint32_t target;                     /* network order */
	uint16_t target_port;                /* network order */
	uint64_t count, rate, batch;
	double seconds;
	uint64_t seed;
	uint32_t pending, hello_bytes, give_up_ms;   /* kind stall */
};

struct template {
	unsigned label;
	uint16_t length;
	uint8_t bytes[FRAME_MAX];
};

static struct template templates[FRAMES_MAX];
static unsigned template_count;
static char labels[LABELS_MAX][64];
static uint64_t label_sent[LABELS_MAX];
static unsigned label_count;
static uint64_t rng;

static void
usage(FILE *out)
{
	fprintf(out,
		"usage: tether-flood --interface IF --mac MAC --kind syn|ack|frames|stall --count N\n"
		"                    [--rate PPS] [--seconds S] [--target IP:PORT]\n"
		"                    [--sources FIRST-LAST] [--frames FILE] [--settle SOCKET]\n"
		"                    [--batch N] [--seed N] [--pending N] [--hello-bytes N]\n"
		"                    [--give-up-ms MS]\n"
		"\n"
		"Writes N frames onto IF (AF_PACKET) addressed to MAC, at most PPS a second\n"
		"(default 100000) and S seconds (default 60), whichever ends first.\n"
		"  syn     SYNs to --target from random --sources addresses and ports\n"
		"  ack     ACKs to --target with random sequence and acknowledgment numbers\n"
		"  frames  FILE's frames (\"label hex\" per line, from the EtherType on),\n"
		"          round-robin; sent counts reported per label\n"
		"  stall   N connections (PPS new ones a second) to --target: SYN, then\n"
		"          on the cookie SYN-ACK one ACK carrying the first --hello-bytes\n"
		"          (default 100, 1..516) of a ClientHello announced as 512 bytes,\n"
		"          then nothing; at most --pending (default 4096) wait for their\n"
		"          SYN-ACK (a new SYN gives up the oldest), and one later than\n"
		"          --give-up-ms (default 1000) is not answered.  Adds to the\n"
		"          report: syns, synacks, hellos, hellos_acked, resets, gave_up,\n"
		"          receive_drops, last_hello_s\n"
		"  --settle SOCKET  every --batch frames (default 256), wait until the\n"
		"          dataplane (stats on SOCKET) counted as many: in drops_total for\n"
		"          kind frames, in its public rx_packets otherwise\n"
		"Prints {\"sent\": N, \"seconds\": S, \"by_label\": {...}} (for stall, sent\n"
		"counts SYNs).  For the lab only.\n");
}

static uint64_t
next_random(void)
{
	uint64_t z = (rng += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static double
now_seconds(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint16_t
checksum_fold(uint32_t sum)
{
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)~sum;
}

static uint32_t
checksum_add(uint32_t sum, const uint8_t *data, size_t length)
{
	for (size_t i = 0; i + 1 < length; i += 2)
		sum += (uint32_t)data[i] << 8 | data[i + 1];
	if (length & 1)
		sum += (uint32_t)data[length - 1] << 8;
	return sum;
}

/* An IPv4 + TCP frame (after the MACs): EtherType, headers, MSS option on SYNs,
 * then payload_length bytes of payload (NULL when 0). */
static uint16_t
build_tcp(uint8_t *frame, uint32_t source, uint16_t source_port, const struct options *o,
	  uint8_t flags, uint32_t sequence, uint32_t acknowledgment, const uint8_t *payload,
	  uint16_t payload_length)
{
	static const uint8_t mss[] = { 2, 4, 0x05, 0xb4 };
	uint8_t *ip = frame + 2, *tcp = ip + 20;
	uint16_t options_length = (flags & 0x02) ? sizeof(mss) : 0;
	uint16_t tcp_length = (uint16_t)(20 + options_length + payload_length);

	frame[0] = 0x08;
	frame[1] = 0x00;
	memset(ip, 0, 20);
	ip[0] = 0x45;
	uint16_t total = htons((uint16_t)(20 + tcp_length));
	memcpy(ip + 2, &total, 2);
	ip[6] = 0x40;                 /* DF */
	ip[8] = 64;
	ip[9] = IPPROTO_TCP;
	memcpy(ip + 12, &source, 4);
	memcpy(ip + 16, &o->target, 4);
	uint16_t ip_sum = htons(checksum_fold(checksum_add(0, ip, 20)));
	memcpy(ip + 10, &ip_sum, 2);

	memset(tcp, 0, 20);
	memcpy(tcp, &source_port, 2);
	memcpy(tcp + 2, &o->target_port, 2);
	uint32_t seq = htonl(sequence), ack = htonl(acknowledgment);
	memcpy(tcp + 4, &seq, 4);
	memcpy(tcp + 8, &ack, 4);
	tcp[12] = (uint8_t)(((20 + options_length) / 4) << 4);
	tcp[13] = flags;
	tcp[14] = 0xff;
	tcp[15] = 0xff;
	memcpy(tcp + 20, mss, options_length);
	if (payload_length)
		memcpy(tcp + 20 + options_length, payload, payload_length);
	/* pseudo-header: addresses, protocol, TCP length */
	uint32_t sum = checksum_add(0, ip + 12, 8) + IPPROTO_TCP + tcp_length;
	uint16_t tcp_sum = htons(checksum_fold(checksum_add(sum, tcp, tcp_length)));
	memcpy(tcp + 16, &tcp_sum, 2);
	return (uint16_t)(2 + 20 + tcp_length);
}

static unsigned
label_index(const char *label)
{
	for (unsigned i = 0; i < label_count; i++)
		if (strcmp(labels[i], label) == 0)
			return i;
	if (label_count == LABELS_MAX) {
		fprintf(stderr, "tether-flood: more than %d labels\n", LABELS_MAX);
		exit(2);
	}
	snprintf(labels[label_count], sizeof(labels[0]), "%s", label);
	return label_count++;
}

static int
load_frames(const char *path)
{
	FILE *file = fopen(path, "r");
	char line[2 * FRAME_MAX + 128], label[64], hex[2 * FRAME_MAX + 2];

	if (!file) {
		fprintf(stderr, "tether-flood: cannot read %s: %s\n", path, strerror(errno));
		return -1;
	}
	while (fgets(line, sizeof(line), file) && template_count < FRAMES_MAX) {
		if (sscanf(line, "%63s %3201s", label, hex) != 2)
			continue;
		struct template *t = &templates[template_count];
		size_t length = strlen(hex) / 2;
		if (length > FRAME_MAX - 12 || length < 2)
			continue;
		for (size_t i = 0; i < length; i++)
			sscanf(hex + 2 * i, "%2hhx", &t->bytes[i]);
		t->length = (uint16_t)length;
		t->label = label_index(label);
		template_count++;
	}
	fclose(file);
	if (template_count == 0) {
		fprintf(stderr, "tether-flood: no frames in %s\n", path);
		return -1;
	}
	return 0;
}

/* What --settle waits for: the dataplane's drops_total for a storm of frames
 * it must drop (legitimate traffic running alongside raises it by little), its
 * public rx_packets otherwise. */
static bool settle_on_drops;

/* That counter now, or -1. */
static long long
public_rx(const char *socket_path)
{
	struct sockaddr_un address = { .sun_family = AF_UNIX };
	static char reply[1 << 20];
	size_t used = 0;
	long long rx = -1;
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);

	snprintf(address.sun_path, sizeof(address.sun_path), "%s", socket_path);
	if (fd < 0 || connect(fd, (struct sockaddr *)&address, sizeof(address)) < 0 ||
	    write(fd, "{\"command\":\"stats\"}\n", 20) != 20)
		goto out;
	while (used < sizeof(reply) - 1) {
		ssize_t n = read(fd, reply + used, sizeof(reply) - 1 - used);
		if (n <= 0)
			break;
		used += (size_t)n;
		if (reply[used - 1] == '\n')
			break;
	}
	reply[used] = '\0';
	json_t *stats = json_loads(reply, 0, NULL);
	json_t *value = settle_on_drops ? json_object_get(stats, "drops_total") :
			json_object_get(json_object_get(json_object_get(stats, "ports"), "public"),
					"rx_packets");
	if (json_is_integer(value))
		rx = json_integer_value(value);
	json_decref(stats);
out:
	if (fd >= 0)
		close(fd);
	return rx;
}

static bool
parse_mac(const char *text, uint8_t mac[6])
{
	return sscanf(text, "%hhx:%hhx:%hhx:%hhx:%hhx:%hhx", &mac[0], &mac[1], &mac[2], &mac[3],
		      &mac[4], &mac[5]) == 6;
}

static bool
parse_range(const char *text, uint32_t *first, uint32_t *count)
{
	char a[32], b[32];
	struct in_addr low, high;

	if (sscanf(text, "%31[^-]-%31s", a, b) != 2 || inet_pton(AF_INET, a, &low) != 1 ||
	    inet_pton(AF_INET, b, &high) != 1 || ntohl(high.s_addr) < ntohl(low.s_addr))
		return false;
	*first = ntohl(low.s_addr);
	*count = ntohl(high.s_addr) - *first + 1;
	return true;
}

static bool
parse_target(const char *text, uint32_t *address, uint16_t *port)
{
	char host[32];
	unsigned value;
	struct in_addr in;

	if (sscanf(text, "%31[^:]:%u", host, &value) != 2 || value == 0 || value > 65535 ||
	    inet_pton(AF_INET, host, &in) != 1)
		return false;
	*address = in.s_addr;
	*port = htons((uint16_t)value);
	return true;
}

static int
parse_options(int argc, char **argv, struct options *o)
{
	static const struct option long_options[] = {
		{ "interface", required_argument, NULL, 'i' }, { "mac", required_argument, NULL, 'm' },
		{ "kind", required_argument, NULL, 'k' }, { "count", required_argument, NULL, 'c' },
		{ "rate", required_argument, NULL, 'r' }, { "seconds", required_argument, NULL, 's' },
		{ "target", required_argument, NULL, 't' }, { "sources", required_argument, NULL, 'S' },
		{ "frames", required_argument, NULL, 'f' }, { "settle", required_argument, NULL, 'w' },
		{ "batch", required_argument, NULL, 'b' }, { "seed", required_argument, NULL, 'e' },
		{ "pending", required_argument, NULL, 'p' },
		{ "hello-bytes", required_argument, NULL, 'H' },
		{ "give-up-ms", required_argument, NULL, 'g' },
		{ "help", no_argument, NULL, 'h' }, { NULL, 0, NULL, 0 },
	};
	bool have_mac = false, have_kind = false;
	int c;

	*o = (struct options){ .rate = 100000, .seconds = 60, .batch = 256, .seed = 1,
			       .pending = 4096, .hello_bytes = 100, .give_up_ms = 1000 };
	parse_range("203.0.113.210-203.0.113.254", &o->sources, &o->source_count);
	parse_target("192.0.2.20:443", &o->target, &o->target_port);
	while ((c = getopt_long(argc, argv, "h", long_options, NULL)) != -1) {
		switch (c) {
		case 'i': o->interface = optarg; break;
		case 'm': have_mac = parse_mac(optarg, o->destination_mac); break;
		case 'k':
			have_kind = true;
			if (strcmp(optarg, "syn") == 0) o->kind = KIND_SYN;
			else if (strcmp(optarg, "ack") == 0) o->kind = KIND_ACK;
			else if (strcmp(optarg, "frames") == 0) o->kind = KIND_FRAMES;
			else if (strcmp(optarg, "stall") == 0) o->kind = KIND_STALL;
			else have_kind = false;
			break;
		case 'c': o->count = strtoull(optarg, NULL, 10); break;
		case 'r': o->rate = strtoull(optarg, NULL, 10); break;
		case 's': o->seconds = strtod(optarg, NULL); break;
		case 't':
			if (!parse_target(optarg, &o->target, &o->target_port)) {
				fprintf(stderr, "tether-flood: --target takes IP:PORT\n");
				return -1;
			}
			break;
		case 'S':
			if (!parse_range(optarg, &o->sources, &o->source_count)) {
				fprintf(stderr, "tether-flood: --sources takes FIRST-LAST addresses\n");
				return -1;
			}
			break;
		case 'f': o->frames_file = optarg; break;
		case 'w': o->settle_socket = optarg; break;
		case 'b': o->batch = strtoull(optarg, NULL, 10); break;
		case 'e': o->seed = strtoull(optarg, NULL, 0); break;
		case 'p': o->pending = (uint32_t)strtoul(optarg, NULL, 10); break;
		case 'H': o->hello_bytes = (uint32_t)strtoul(optarg, NULL, 10); break;
		case 'g': o->give_up_ms = (uint32_t)strtoul(optarg, NULL, 10); break;
		case 'h': usage(stdout); exit(0);
		default: usage(stderr); return -1;
		}
	}
	if (!o->interface || !have_mac || !have_kind || o->count == 0 || o->rate == 0 ||
	    o->batch == 0 || o->seconds <= 0 || (o->kind == KIND_FRAMES && !o->frames_file)) {
		fprintf(stderr, "tether-flood: --interface, --mac, --kind, --count (and --frames "
			"for kind frames) are required; --rate, --batch, --seconds positive\n\n");
		usage(stderr);
		return -1;
	}
	if (o->kind == KIND_STALL &&
	    (o->pending == 0 || o->pending > PENDING_MAX || o->hello_bytes == 0 ||
	     o->hello_bytes >= HELLO_SIZE || o->give_up_ms == 0 || o->settle_socket)) {
		fprintf(stderr, "tether-flood: kind stall takes --pending 1..%d, --hello-bytes "
			"1..%d, --give-up-ms > 0, and no --settle\n", PENDING_MAX, HELLO_SIZE - 1);
		return -1;
	}
	return 0;
}

/* Fill `frame` (from the MACs on) with frame number `n`; returns its length. */
static uint16_t
next_frame(const struct options *o, uint64_t n, const uint8_t source_mac[6], uint8_t *frame)
{
	uint16_t length;

	memcpy(frame, o->destination_mac, 6);
	memcpy(frame + 6, source_mac, 6);
	if (o->kind == KIND_FRAMES) {
		const struct template *t = &templates[n % template_count];
		memcpy(frame + 12, t->bytes, t->length);
		label_sent[t->label]++;
		length = (uint16_t)(12 + t->length);
	} else {
		uint64_t r = next_random();
		uint32_t source = htonl(o->sources + (uint32_t)(r % o->source_count));
		uint16_t port = htons((uint16_t)(1024 + (r >> 32) % 64000));
		uint32_t sequence = (uint32_t)next_random(), ack = (uint32_t)(next_random() >> 32);
		length = (uint16_t)(12 + build_tcp(frame + 12, source, port, o,
						   o->kind == KIND_SYN ? 0x02 : 0x10, sequence,
						   o->kind == KIND_SYN ? 0 : ack, NULL, 0));
		label_sent[0]++;
	}
	/* never padded to the Ethernet minimum: a storm's short frames must stay
	 * short (a veth carries them as they are) */
	return length;
}

/* The JSON line; `extra`'s members (a reference this takes, or NULL) join it. */
static void
print_report(uint64_t sent, double seconds, const char *error, json_t *extra)
{
	json_t *by_label = json_object();
	for (unsigned i = 0; i < label_count; i++)
		json_object_set_new(by_label, labels[i], json_integer((json_int_t)label_sent[i]));
	json_t *report = json_pack("{s:I, s:f, s:o}", "sent", (json_int_t)sent, "seconds", seconds,
				   "by_label", by_label);
	if (extra)
		json_object_update(report, extra);
	json_decref(extra);
	if (error)
		json_object_set_new(report, "error", json_string(error));
	char *text = json_dumps(report, JSON_COMPACT);
	printf("%s\n", text);
	free(text);
	json_decref(report);
}

/* --- kind stall ------------------------------------------------------------ */

enum slot_state { SLOT_FREE, SLOT_WAITING_SYNACK, SLOT_HELLO_SENT };

/* One connection of a stall run, in slot n % --pending. */
struct slot {
	uint8_t state;
	uint16_t port;          /* network order */
	uint32_t source;        /* network order */
	uint32_t isn;           /* host order; its top 16 bits are the slot */
	double syn_sent;
};

struct stall {
	const struct options *o;
	int fd;
	const uint8_t *source_mac;
	struct slot *slots;
	uint32_t *port_start, *ports_used;   /* per source address */
	uint8_t hello[HELLO_SIZE];
	uint64_t syns, synacks, hellos, hellos_acked, resets, gave_up, waiting;
	double last_syn, last_hello;
};

/* A ClientHello of 517 bytes (record header announcing 512, handshake header,
 * TLS 1.2 version, random, one cipher suite, a padding extension): well formed,
 * so the dataplane waits for the rest of it.  Only a prefix is ever sent. */
static void
build_hello(uint8_t hello[HELLO_SIZE])
{
	static const uint8_t head[] = {
		0x16, 0x03, 0x01, 0x02, 0x00,   /* handshake record, 512 bytes */
		0x01, 0x00, 0x01, 0xfc,         /* ClientHello, 508 bytes */
		0x03, 0x03,                     /* client_version */
	};
	static const uint8_t tail[] = {
		0x00,                           /* no session ID */
		0x00, 0x02, 0x13, 0x01,         /* cipher suites: TLS_AES_128_GCM_SHA256 */
		0x01, 0x00,                     /* compression: null */
		0x01, 0xd1,                     /* extensions, 465 bytes: */
		0x00, 0x15, 0x01, 0xcd,         /* padding, 461 zero bytes */
	};
	memset(hello, 0, HELLO_SIZE);
	memcpy(hello, head, sizeof(head));
	for (unsigned i = 0; i < 32; i++)
		hello[sizeof(head) + i] = (uint8_t)next_random();
	memcpy(hello + sizeof(head) + 32, tail, sizeof(tail));
}

/* Keep only TCP from --target (IPv4, not a fragment): the SYN-ACKs, ACKs and
 * RSTs the dataplane sends our connections. */
static int
attach_target_filter(int fd, const struct options *o)
{
	struct sock_filter code[] = {
		BPF_STMT(BPF_LD | BPF_H | BPF_ABS, 12),                 /* EtherType */
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, ETH_P_IP, 0, 10),
		BPF_STMT(BPF_LD | BPF_B | BPF_ABS, 23),                 /* IP protocol */
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, IPPROTO_TCP, 0, 8),
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, 26),                 /* IP source */
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, ntohl(o->target), 0, 6),
		BPF_STMT(BPF_LD | BPF_H | BPF_ABS, 20),                 /* fragment offset */
		BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, 0x1fff, 4, 0),
		BPF_STMT(BPF_LDX | BPF_B | BPF_MSH, 14),                /* X = IP header length */
		BPF_STMT(BPF_LD | BPF_H | BPF_IND, 14),                 /* TCP source port */
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, ntohs(o->target_port), 0, 1),
		BPF_STMT(BPF_RET | BPF_K, 0xffff),
		BPF_STMT(BPF_RET | BPF_K, 0),
	};
	struct sock_fprog program = { .len = sizeof(code) / sizeof(code[0]), .filter = code };
	return setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &program, sizeof(program));
}

/* A source address (network order) and one of its ports not used yet in this
 * run: a random address, its ports in turn from a random start. */
static void
next_source(struct stall *st, uint32_t *source, uint16_t *port)
{
	const struct options *o = st->o;
	uint32_t i = (uint32_t)(next_random() % o->source_count);

	while (st->ports_used[i] == PORTS_PER_SOURCE)   /* count <= every port: one is left */
		i = (i + 1) % o->source_count;
	*source = htonl(o->sources + i);
	*port = htons((uint16_t)(1024 + (st->port_start[i] + st->ports_used[i]++) % PORTS_PER_SOURCE));
}

/* Frame the SYN of connection number st->syns into `frame`; returns its length. */
static uint16_t
stall_syn(struct stall *st, double now, uint8_t *frame)
{
	uint32_t index = (uint32_t)(st->syns % st->o->pending);
	struct slot *slot = &st->slots[index];

	if (slot->state == SLOT_WAITING_SYNACK) {   /* the oldest still waiting */
		st->gave_up++;
		st->waiting--;
	}
	next_source(st, &slot->source, &slot->port);
	slot->isn = index << 16 | (uint32_t)(next_random() & 0xffff);
	slot->state = SLOT_WAITING_SYNACK;
	slot->syn_sent = now;
	st->waiting++;
	st->syns++;
	memcpy(frame, st->o->destination_mac, 6);
	memcpy(frame + 6, st->source_mac, 6);
	return (uint16_t)(12 + build_tcp(frame + 12, slot->source, slot->port, st->o, 0x02,
					 slot->isn, 0, NULL, 0));
}

/* The slot whose connection a segment to (address, port) acknowledging `isn`
 * belongs to, if it is in `state`; else NULL. */
static struct slot *
find_slot(struct stall *st, uint32_t address, uint16_t port, uint32_t isn, enum slot_state state)
{
	uint32_t index = isn >> 16;
	struct slot *slot = index < st->o->pending ? &st->slots[index] : NULL;

	if (!slot || slot->state != state || slot->isn != isn || slot->source != address ||
	    slot->port != port)
		return NULL;
	return slot;
}

/* Read one frame from the target; when it is a SYN-ACK for a connection that
 * waits for one, frame the ACK + partial hello into `answer` and return its
 * length; else 0. */
static uint16_t
stall_receive(struct stall *st, const uint8_t *frame, size_t length, double now, uint8_t *answer)
{
	const struct options *o = st->o;
	const uint8_t *ip = frame + 14;

	if (length < 14 + 20 || frame[12] != 0x08 || frame[13] != 0x00 || ip[9] != IPPROTO_TCP)
		return 0;
	size_t ip_header = (size_t)(ip[0] & 0x0f) * 4;
	const uint8_t *tcp = ip + ip_header;
	if (ip_header < 20 || length < 14 + ip_header + 20 || memcmp(ip + 12, &o->target, 4) != 0 ||
	    memcmp(tcp, &o->target_port, 2) != 0)
		return 0;
	uint32_t address, seq, ack;
	uint16_t port;
	memcpy(&address, ip + 16, 4);
	memcpy(&port, tcp + 2, 2);
	memcpy(&seq, tcp + 4, 4);
	memcpy(&ack, tcp + 8, 4);
	seq = ntohl(seq);
	ack = ntohl(ack);
	uint8_t flags = tcp[13] & 0x17;     /* FIN SYN RST ACK */

	if (flags & 0x04) {
		st->resets++;
		return 0;
	}
	if (flags == 0x10) {                /* the dataplane acknowledged the hello */
		struct slot *slot = find_slot(st, address, port, ack - 1 - o->hello_bytes,
					      SLOT_HELLO_SENT);
		if (slot) {
			slot->state = SLOT_FREE;
			st->hellos_acked++;
		}
		return 0;
	}
	if (flags != 0x12)
		return 0;
	struct slot *slot = find_slot(st, address, port, ack - 1, SLOT_WAITING_SYNACK);
	if (!slot)
		return 0;
	st->waiting--;
	st->synacks++;
	if ((now - slot->syn_sent) * 1000 > o->give_up_ms) {
		slot->state = SLOT_FREE;
		st->gave_up++;
		return 0;
	}
	slot->state = SLOT_HELLO_SENT;
	memcpy(answer, o->destination_mac, 6);
	memcpy(answer + 6, st->source_mac, 6);
	return (uint16_t)(12 + build_tcp(answer + 12, address, port, o, 0x18 /* PSH ACK */,
					 ack, seq + 1, st->hello, (uint16_t)o->hello_bytes));
}

/* Send frames[0..n) in one sendmmsg; false (with `error` set) unless all left. */
static bool
send_frames(int fd, uint8_t frames[][FRAME_MAX], const uint16_t *lengths, unsigned n,
	    char *error, size_t error_size)
{
	struct mmsghdr messages[BATCH_MAX];
	struct iovec vectors[BATCH_MAX];

	for (unsigned i = 0; i < n; i++) {
		vectors[i] = (struct iovec){ .iov_base = frames[i], .iov_len = lengths[i] };
		messages[i] = (struct mmsghdr){ .msg_hdr = { .msg_iov = &vectors[i], .msg_iovlen = 1 } };
	}
	int done = n ? sendmmsg(fd, messages, n, 0) : 0;
	if (done < (int)n) {
		snprintf(error, error_size, "sendmmsg sent %d of %u: %s", done, n, strerror(errno));
		return false;
	}
	return true;
}

/* Answer every SYN-ACK queued on the socket; false (with `error` set) when a
 * send fails. */
static bool
stall_answer(struct stall *st, char *error, size_t error_size)
{
	static uint8_t received[BATCH_MAX][FRAME_MAX], answers[BATCH_MAX][FRAME_MAX];
	struct mmsghdr messages[BATCH_MAX];
	struct iovec vectors[BATCH_MAX];
	uint16_t lengths[BATCH_MAX];

	for (;;) {
		for (unsigned i = 0; i < BATCH_MAX; i++) {
			vectors[i] = (struct iovec){ .iov_base = received[i], .iov_len = FRAME_MAX };
			messages[i] = (struct mmsghdr){ .msg_hdr = { .msg_iov = &vectors[i],
								     .msg_iovlen = 1 } };
		}
		int got = recvmmsg(st->fd, messages, BATCH_MAX, MSG_DONTWAIT, NULL);
		if (got <= 0)
			return true;
		double now = now_seconds();
		unsigned n = 0;
		for (int i = 0; i < got; i++)
			if ((lengths[n] = stall_receive(st, received[i], messages[i].msg_len, now,
							answers[n])) != 0)
				n++;
		if (!send_frames(st->fd, answers, lengths, n, error, error_size))
			return false;
		if (n) {
			st->hellos += n;
			st->last_hello = now;
		}
		if (got < BATCH_MAX)
			return true;
	}
}

/* Kind stall: the whole run; prints the report, returns the exit status. */
static int
run_stall(const struct options *o, int fd, const uint8_t *source_mac)
{
	static uint8_t syns[BATCH_MAX][FRAME_MAX];
	uint16_t lengths[BATCH_MAX];
	struct stall st = { .o = o, .fd = fd, .source_mac = source_mac };
	char error[160] = "";
	int buffer = 16 << 20;

	if (o->count > (uint64_t)o->source_count * PORTS_PER_SOURCE) {
		fprintf(stderr, "tether-flood: --count is over the %u source addresses' %u ports each\n",
			o->source_count, PORTS_PER_SOURCE);
		return 2;
	}
	st.slots = calloc(o->pending, sizeof(*st.slots));
	st.port_start = calloc(o->source_count, sizeof(uint32_t));
	st.ports_used = calloc(o->source_count, sizeof(uint32_t));
	if (!st.slots || !st.port_start || !st.ports_used) {
		fprintf(stderr, "tether-flood: out of memory\n");
		return 1;
	}
	for (uint32_t i = 0; i < o->source_count; i++)
		st.port_start[i] = (uint32_t)(next_random() % PORTS_PER_SOURCE);
	build_hello(st.hello);
	if (attach_target_filter(fd, o) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &buffer, sizeof(buffer)) < 0) {
		fprintf(stderr, "tether-flood: receive filter or buffer: %s\n", strerror(errno));
		return 1;
	}

	double start = now_seconds(), deadline = start + o->seconds;
	for (;;) {
		double now = now_seconds();
		if (st.syns == o->count &&
		    ((st.waiting == 0 && st.hellos_acked == st.hellos) ||
		     (now - st.last_syn) * 1000 >= o->give_up_ms))
			break;
		if (now > deadline) {
			snprintf(error, sizeof(error), "time limit of %.0f s reached", o->seconds);
			break;
		}
		if (!stall_answer(&st, error, sizeof(error)))
			break;
		/* the SYNs due by now, a batch at most */
		uint64_t due = (uint64_t)((now - start) * (double)o->rate) + 1;
		if (due > o->count)
			due = o->count;
		unsigned n = 0;
		while (st.syns < due && n < BATCH_MAX) {
			lengths[n] = stall_syn(&st, now, syns[n]);
			n++;
		}
		if (!send_frames(fd, syns, lengths, n, error, sizeof(error)))
			break;
		if (n) {
			st.last_syn = now;
			continue;
		}
		/* nothing due: wait for a frame or the next SYN's time */
		double next = st.syns < o->count ? start + (double)st.syns / (double)o->rate :
			      st.last_syn + o->give_up_ms / 1000.0;
		double wait = next - now_seconds();
		if (wait > 0.01)
			wait = 0.01;
		struct timespec timeout = { 0, wait > 0 ? (long)(wait * 1e9) : 0 };
		struct pollfd readable = { .fd = fd, .events = POLLIN };
		ppoll(&readable, 1, &timeout, NULL);
	}

	struct tpacket_stats socket_stats = { 0 };
	socklen_t stats_length = sizeof(socket_stats);
	getsockopt(fd, SOL_PACKET, PACKET_STATISTICS, &socket_stats, &stats_length);
	label_sent[0] = st.syns;
	json_t *extra = json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:f}",
				  "syns", (json_int_t)st.syns, "synacks", (json_int_t)st.synacks,
				  "hellos", (json_int_t)st.hellos,
				  "hellos_acked", (json_int_t)st.hellos_acked,
				  "resets", (json_int_t)st.resets,
				  "gave_up", (json_int_t)(st.gave_up + st.waiting),
				  "receive_drops", (json_int_t)socket_stats.tp_drops,
				  "last_hello_s", st.hellos ? st.last_hello - start : 0.0);
	print_report(st.syns, now_seconds() - start, error[0] ? error : NULL, extra);
	free(st.slots);
	free(st.port_start);
	free(st.ports_used);
	return error[0] ? 1 : 0;
}

int
main(int argc, char **argv)
{
	struct options o;
	static uint8_t frames[BATCH_MAX][FRAME_MAX];
	struct mmsghdr messages[BATCH_MAX];
	struct iovec vectors[BATCH_MAX];
	struct ifreq request;
	char error[160] = "";

	if (parse_options(argc, argv, &o) < 0)
		return 2;
	rng = o.seed;
	settle_on_drops = o.kind == KIND_FRAMES;
	static const char *const kind_labels[] = { "syn", "ack", NULL, "stall" };
	if (o.kind == KIND_FRAMES ? load_frames(o.frames_file) < 0 :
	    label_index(kind_labels[o.kind]) != 0)
		return 2;
	int fd = socket(AF_PACKET, SOCK_RAW, 0);
	unsigned index = if_nametoindex(o.interface);
	memset(&request, 0, sizeof(request));
	snprintf(request.ifr_name, sizeof(request.ifr_name), "%s", o.interface);
	if (fd < 0 || index == 0 || ioctl(fd, SIOCGIFHWADDR, &request) < 0) {
		fprintf(stderr, "tether-flood: interface %s: %s\n", o.interface, strerror(errno));
		return 1;
	}
	struct sockaddr_ll link = { .sll_family = AF_PACKET, .sll_ifindex = (int)index,
				    .sll_protocol = htons(ETH_P_ALL) };
	if (bind(fd, (struct sockaddr *)&link, sizeof(link)) < 0) {
		fprintf(stderr, "tether-flood: bind %s: %s\n", o.interface, strerror(errno));
		return 1;
	}
	const uint8_t *source_mac = (const uint8_t *)request.ifr_hwaddr.sa_data;
	if (o.kind == KIND_STALL) {
		int status = run_stall(&o, fd, source_mac);
		close(fd);
		return status;
	}

	long long rx_base = o.settle_socket ? public_rx(o.settle_socket) : 0;
	if (rx_base < 0) {
		fprintf(stderr, "tether-flood: no stats from %s\n", o.settle_socket);
		return 1;
	}
	double start = now_seconds(), deadline = start + o.seconds;
	uint64_t sent = 0, since_settle = 0;
	while (sent < o.count) {
		double now = now_seconds();
		if (now > deadline) {
			snprintf(error, sizeof(error), "time limit of %.0f s reached", o.seconds);
			break;
		}
		double due = start + (double)sent / (double)o.rate;
		if (due > now) {
			struct timespec pause = { 0, (long)((due - now) * 1e9) };
			nanosleep(&pause, NULL);
		}
		unsigned n = o.count - sent < BATCH_MAX ? (unsigned)(o.count - sent) : BATCH_MAX;
		for (unsigned i = 0; i < n; i++) {
			vectors[i].iov_base = frames[i];
			vectors[i].iov_len = next_frame(&o, sent + i, source_mac, frames[i]);
			messages[i] = (struct mmsghdr){ .msg_hdr = { .msg_iov = &vectors[i],
								     .msg_iovlen = 1 } };
		}
		int done = sendmmsg(fd, messages, n, 0);
		if (done < (int)n) {
			snprintf(error, sizeof(error), "sendmmsg sent %d of %u: %s", done, n,
				 strerror(errno));
			sent += done > 0 ? (unsigned)done : 0;
			break;
		}
		sent += n;
		since_settle += n;
		if (o.settle_socket && (since_settle >= o.batch || sent == o.count)) {
			since_settle = 0;
			double settle_deadline = now_seconds() + 5;
			long long rx;
			while ((rx = public_rx(o.settle_socket)) >= 0 && rx - rx_base < (long long)sent) {
				if (now_seconds() > settle_deadline) {
					snprintf(error, sizeof(error), "the dataplane received %lld of %llu "
						 "frames within 5 s", rx - rx_base, (unsigned long long)sent);
					break;
				}
				usleep(200);
			}
			if (error[0])
				break;
		}
	}
	print_report(sent, now_seconds() - start, error[0] ? error : NULL, NULL);
	close(fd);
	return error[0] ? 1 : 0;
}
