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
 *
 * Every run is bounded: --count frames at most --rate per second, and
 * --seconds at most.  With --settle SOCKET it waits, every --batch frames, until
 * the dataplane has counted as many frames as were sent (drops_total for kind
 * frames, public rx_packets otherwise), so a full af_packet ring never loses
 * frames the test counts.  Prints
 * one JSON line: {"sent", "seconds", "by_label"}.  Lab use only: the caller
 * runs it inside a lab namespace, on a lab veth.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <netinet/in.h>
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

enum kind { KIND_SYN, KIND_ACK, KIND_FRAMES };

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
		"usage: tether-flood --interface IF --mac MAC --kind syn|ack|frames --count N\n"
		"                    [--rate PPS] [--seconds S] [--target IP:PORT]\n"
		"                    [--sources FIRST-LAST] [--frames FILE] [--settle SOCKET]\n"
		"                    [--batch N] [--seed N]\n"
		"\n"
		"Writes N frames onto IF (AF_PACKET) addressed to MAC, at most PPS a second\n"
		"(default 100000) and S seconds (default 60), whichever ends first.\n"
		"  syn     SYNs to --target from random --sources addresses and ports\n"
		"  ack     ACKs to --target with random sequence and acknowledgment numbers\n"
		"  frames  FILE's frames (\"label hex\" per line, from the EtherType on),\n"
		"          round-robin; sent counts reported per label\n"
		"  --settle SOCKET  every --batch frames (default 256), wait until the\n"
		"          dataplane (stats on SOCKET) counted as many: in drops_total for\n"
		"          kind frames, in its public rx_packets otherwise\n"
		"Prints {\"sent\": N, \"seconds\": S, \"by_label\": {...}}.  For the lab only.\n");
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

/* An IPv4 + TCP frame (after the MACs): EtherType, headers, MSS option on SYNs. */
static uint16_t
build_tcp(uint8_t *frame, uint32_t source, uint16_t source_port, const struct options *o,
	  uint8_t flags, uint32_t sequence, uint32_t acknowledgment)
{
	static const uint8_t mss[] = { 2, 4, 0x05, 0xb4 };
	uint8_t *ip = frame + 2, *tcp = ip + 20;
	uint16_t options_length = (flags & 0x02) ? sizeof(mss) : 0;
	uint16_t tcp_length = (uint16_t)(20 + options_length);

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

	memset(tcp, 0, tcp_length);
	memcpy(tcp, &source_port, 2);
	memcpy(tcp + 2, &o->target_port, 2);
	uint32_t seq = htonl(sequence), ack = htonl(acknowledgment);
	memcpy(tcp + 4, &seq, 4);
	memcpy(tcp + 8, &ack, 4);
	tcp[12] = (uint8_t)((tcp_length / 4) << 4);
	tcp[13] = flags;
	tcp[14] = 0xff;
	tcp[15] = 0xff;
	memcpy(tcp + 20, mss, options_length);
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
		{ "help", no_argument, NULL, 'h' }, { NULL, 0, NULL, 0 },
	};
	bool have_mac = false, have_kind = false;
	int c;

	*o = (struct options){ .rate = 100000, .seconds = 60, .batch = 256, .seed = 1 };
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
						   o->kind == KIND_SYN ? 0 : ack));
		label_sent[0]++;
	}
	/* never padded to the Ethernet minimum: a storm's short frames must stay
	 * short (a veth carries them as they are) */
	return length;
}

static void
print_report(uint64_t sent, double seconds, const char *error)
{
	json_t *by_label = json_object();
	for (unsigned i = 0; i < label_count; i++)
		json_object_set_new(by_label, labels[i], json_integer((json_int_t)label_sent[i]));
	json_t *report = json_pack("{s:I, s:f, s:o}", "sent", (json_int_t)sent, "seconds", seconds,
				   "by_label", by_label);
	if (error)
		json_object_set_new(report, "error", json_string(error));
	char *text = json_dumps(report, JSON_COMPACT);
	printf("%s\n", text);
	free(text);
	json_decref(report);
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
	if (o.kind == KIND_FRAMES ? load_frames(o.frames_file) < 0 :
	    label_index(o.kind == KIND_SYN ? "syn" : "ack") != 0)
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
	print_report(sent, now_seconds() - start, error[0] ? error : NULL);
	close(fd);
	return error[0] ? 1 : 0;
}
