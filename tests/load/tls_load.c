/*
 * tls_load.c: tether-load, the lab comparison's load generator.
 *
 * It opens TLS connections to one address as fast as --threads blocking
 * threads can, for a bounded time and count, and says how many it managed per
 * second.  Each connection is what a remote-support client does: a TLS
 * handshake, "GET / HTTP/1.1", the whole answer, close_notify both ways, FIN.
 * lab_server.py names itself and says whether it resumed the session in every
 * answer (X-Lab-Identity), so the tool also counts which backend answered and
 * whether a resumption really resumed: the stickiness a balancer gave.
 *
 * Modes:
 *   new     every connection a full handshake (no session offered).
 *   resume  first --sessions full handshakes (untimed) whose TLS sessions are
 *           kept, then the timed phase: connection j offers session j mod K
 *           from a source address other than the one that created it, the
 *           case tether's ssl-session persistence is for (clients behind
 *           address pools, mobile clients).  A balancer that places by source
 *           address sends most of them to a server that does not know the
 *           session, which then does a full handshake.
 *   bulk    every connection downloads --bulk-bytes (GET /bytes/N): bytes/s.
 *
 * TLS 1.2 with tickets off by default, so sessions resume by session ID: the
 * only thing HAProxy's payload_lv(43,1) stick table can see (in TLS 1.3 the
 * ClientHello's session ID is a random compatibility value).
 *
 * CPU accounting is done here, over exactly the timed window: utime + stime of
 * each --cpu-pid (the whole process, every thread) from /proc/PID/stat, and the
 * machine's softirq, system and busy time from /proc/stat (the kernel's packet
 * work: what an nftables NAT costs, and what veths cost everyone).  /proc is
 * the root namespace's even inside `ip netns exec`, so the PIDs are global.
 *
 * Blocking sockets and threads rather than an event loop: on a 2-core lab the
 * balancers and the Python backends are the bottleneck, not this tool (it
 * verifies no certificate, and a client handshake on P-256 is cheap).
 *
 * Output: one JSON document on stdout; usage errors on stderr.  Exit 0 when
 * every connection succeeded, 1 when some failed (the document says how), 2 on
 * usage or setup errors.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#define MAX_THREADS 256
#define MAX_PIDS 16
#define MAX_SECONDS 300
#define MAX_SOURCES 65536
#define MAX_BACKENDS 9              /* be1..be8, index 0 counts any other name */
#define HEAD_MAX 4096
#define ERROR_TEXT 160
#define LATENCY_BUCKETS 10000           /* 1 ms each; the last holds 10 s and more */

enum mode { MODE_NEW, MODE_RESUME, MODE_BULK };

struct options {
	enum mode mode;
	struct sockaddr_in target;
	char target_text[64];
	uint32_t source_first;          /* host order; 0 = let the kernel choose */
	uint32_t source_count;
	int threads;
	double seconds;
	uint64_t max_connections;
	int sessions;
	uint64_t bulk_bytes;
	double io_timeout;
	int tls_version;                /* TLS1_2_VERSION or TLS1_3_VERSION */
	bool tickets;
	const char *server_name;
	pid_t pids[MAX_PIDS];
	int pid_count;
};

/* One connection's outcome. */
struct result {
	bool ok;
	bool reused;                    /* the client's view: SSL_session_reused */
	bool server_reused;             /* lab_server.py's reused=1 */
	int backend;                    /* 1..8 for beN, 0 otherwise */
	double seconds;                 /* connect to close */
	uint64_t body_bytes;
	char error[ERROR_TEXT];
};

/* Totals, shared by the threads (atomics: no lock on the hot path). */
struct totals {
	atomic_uint_fast64_t started;
	atomic_uint_fast64_t ok;
	atomic_uint_fast64_t failed;
	atomic_uint_fast64_t reused;
	atomic_uint_fast64_t server_reused;
	atomic_uint_fast64_t bytes;
	atomic_uint_fast64_t backends[MAX_BACKENDS];
	atomic_uint_fast64_t latency_ms[LATENCY_BUCKETS];  /* ok connections, whole */
	atomic_uint_fast64_t latency_max_us;
	pthread_mutex_t error_lock;
	char first_error[ERROR_TEXT];
};

struct run {
	const struct options *opt;
	SSL_CTX *ctx;
	SSL_SESSION **sessions;         /* resume: K sessions, and who made them */
	uint32_t *session_source;
	int session_count;
	struct timespec deadline;
	bool timed;                     /* false while resume makes its sessions */
	uint64_t limit;                 /* connections to start in this phase */
	atomic_bool closed;             /* the timed window is over: count no more */
	atomic_int workers_done;
	atomic_uint_fast64_t late;      /* finished after the window: not counted */
	struct totals totals;
};

static double now_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void usage(FILE *out)
{
	fprintf(out,
"usage: tether-load --target IP:PORT --mode new|resume|bulk [options]\n"
"\n"
"Opens TLS connections (handshake, GET, whole answer, close) to IP:PORT from\n"
"--threads blocking threads for --seconds, and prints one JSON document:\n"
"connections/s, failures, which lab backend answered, how many resumptions\n"
"resumed, and the CPU the --cpu-pid processes and the kernel's softirq spent\n"
"in the timed window.  Meant for tests/e2e/lab_server.py backends, inside a\n"
"lab client namespace (scripts/compare.sh runs it).\n"
"\n"
"  --target IP:PORT      where to connect (an IPv4 address)\n"
"  --mode MODE           new: full handshakes; resume: --sessions full handshakes\n"
"                        first (untimed), then resumptions of those sessions,\n"
"                        each from another source address than its creator;\n"
"                        bulk: GET /bytes/--bulk-bytes per connection\n"
"  --sources A-B         bind each connection to the next address of this\n"
"                        range (e.g. 203.0.113.10-203.0.113.109); default: none\n"
"  --threads N           concurrent connections (default 16; 1..%d)\n"
"  --seconds S           length of the timed phase (default 5; max %d)\n"
"  --max-connections N   stop starting connections after N (default 1000000)\n"
"  --sessions K          resume: sessions to make and offer (default 200)\n"
"  --bulk-bytes N        bulk: bytes per download (default 50000000; the lab\n"
"                        server caps it at 100000000)\n"
"  --io-timeout S        per connect/read/write (default 5)\n"
"  --tls 1.2|1.3         highest version offered (default 1.2)\n"
"  --tickets on|off      TLS 1.2 session tickets (default off: resumption by\n"
"                        session ID)\n"
"  --server-name NAME    SNI to send (default none)\n"
"  --cpu-pid PID         measure this process's CPU time (repeatable, max %d)\n"
"  -h, --help            this text\n"
"\n"
"Output fields: mode, target, threads, seconds (the timed window),\n"
"connections, ok, failed (finished inside the window), late (finished after\n"
"it, not counted), per_second (ok connections/s), reused and\n"
"server_reused (resumed, client's and server's view), reused_fraction (of ok),\n"
"bytes and bytes_per_second (bodies), backends {beN: count}, latency_ms\n"
"{p50, p99 (upper edges of 1 ms buckets), max} of ok connections, first_error,\n"
"cpu {pids, process_s, softirq_s, system_s, busy_s, cpus}.\n"
"Exit status: 0 all connections ok, 1 some failed, 2 usage or setup error.\n",
		MAX_THREADS, MAX_SECONDS, MAX_PIDS);
}

static int parse_target(const char *text, struct options *opt)
{
	char host[64];
	const char *colon = strrchr(text, ':');
	char *end;
	long port;

	if (!colon || (size_t)(colon - text) >= sizeof(host))
		return -1;
	memcpy(host, text, (size_t)(colon - text));
	host[colon - text] = '\0';
	port = strtol(colon + 1, &end, 10);
	if (*end || port < 1 || port > 65535)
		return -1;
	memset(&opt->target, 0, sizeof(opt->target));
	opt->target.sin_family = AF_INET;
	opt->target.sin_port = htons((uint16_t)port);
	if (inet_pton(AF_INET, host, &opt->target.sin_addr) != 1)
		return -1;
	snprintf(opt->target_text, sizeof(opt->target_text), "%s", text);
	return 0;
}

static int parse_range(const char *text, struct options *opt)
{
	char first[32], last[32];
	const char *dash = strchr(text, '-');
	struct in_addr a, b;

	if (!dash) {
		dash = text + strlen(text);
		snprintf(last, sizeof(last), "%s", text);
	} else {
		snprintf(last, sizeof(last), "%s", dash + 1);
	}
	if ((size_t)(dash - text) >= sizeof(first))
		return -1;
	memcpy(first, text, (size_t)(dash - text));
	first[dash - text] = '\0';
	if (inet_pton(AF_INET, first, &a) != 1 || inet_pton(AF_INET, last, &b) != 1)
		return -1;
	if (ntohl(b.s_addr) < ntohl(a.s_addr) ||
	    ntohl(b.s_addr) - ntohl(a.s_addr) >= MAX_SOURCES)
		return -1;
	opt->source_first = ntohl(a.s_addr);
	opt->source_count = ntohl(b.s_addr) - ntohl(a.s_addr) + 1;
	return 0;
}

/* Parses a number in [min, max]; returns -1 (after saying so) otherwise. */
static int parse_number(const char *name, const char *text, double min, double max,
			double *out)
{
	char *end;
	double v = strtod(text, &end);

	if (!*text || *end || v < min || v > max) {
		fprintf(stderr, "tether-load: %s takes a number from %g to %g, not '%s'\n",
			name, min, max, text);
		return -1;
	}
	*out = v;
	return 0;
}

/* Fills opt from argv; returns 0, or 2 after printing why (or 1 for --help). */
static int parse_options(int argc, char **argv, struct options *opt)
{
	static const struct option longopts[] = {
		{ "target", required_argument, NULL, 't' },
		{ "mode", required_argument, NULL, 'm' },
		{ "sources", required_argument, NULL, 's' },
		{ "threads", required_argument, NULL, 'n' },
		{ "seconds", required_argument, NULL, 'd' },
		{ "max-connections", required_argument, NULL, 'c' },
		{ "sessions", required_argument, NULL, 'k' },
		{ "bulk-bytes", required_argument, NULL, 'b' },
		{ "io-timeout", required_argument, NULL, 'o' },
		{ "tls", required_argument, NULL, 'v' },
		{ "tickets", required_argument, NULL, 'T' },
		{ "server-name", required_argument, NULL, 'S' },
		{ "cpu-pid", required_argument, NULL, 'p' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	bool have_target = false, have_mode = false, have_threads = false;
	double v;
	int c;

	*opt = (struct options){ .threads = 16, .seconds = 5, .max_connections = 1000000,
				 .sessions = 200, .bulk_bytes = 50000000, .io_timeout = 5,
				 .tls_version = TLS1_2_VERSION };
	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (c) {
		case 't':
			if (parse_target(optarg, opt)) {
				fprintf(stderr, "tether-load: --target wants IPv4:PORT, not '%s'\n",
					optarg);
				return 2;
			}
			have_target = true;
			break;
		case 'm':
			if (!strcmp(optarg, "new"))
				opt->mode = MODE_NEW;
			else if (!strcmp(optarg, "resume"))
				opt->mode = MODE_RESUME;
			else if (!strcmp(optarg, "bulk"))
				opt->mode = MODE_BULK;
			else {
				fprintf(stderr, "tether-load: --mode is new, resume or bulk, not '%s'\n",
					optarg);
				return 2;
			}
			have_mode = true;
			break;
		case 's':
			if (parse_range(optarg, opt)) {
				fprintf(stderr, "tether-load: --sources wants A-B (IPv4, A <= B, at "
					"most %d addresses), not '%s'\n", MAX_SOURCES, optarg);
				return 2;
			}
			break;
		case 'n':
			if (parse_number("--threads", optarg, 1, MAX_THREADS, &v))
				return 2;
			opt->threads = (int)v;
			have_threads = true;
			break;
		case 'd':
			if (parse_number("--seconds", optarg, 0.1, MAX_SECONDS, &v))
				return 2;
			opt->seconds = v;
			break;
		case 'c':
			if (parse_number("--max-connections", optarg, 1, 1e9, &v))
				return 2;
			opt->max_connections = (uint64_t)v;
			break;
		case 'k':
			if (parse_number("--sessions", optarg, 1, 100000, &v))
				return 2;
			opt->sessions = (int)v;
			break;
		case 'b':
			if (parse_number("--bulk-bytes", optarg, 1, 1e9, &v))
				return 2;
			opt->bulk_bytes = (uint64_t)v;
			break;
		case 'o':
			if (parse_number("--io-timeout", optarg, 0.1, 60, &v))
				return 2;
			opt->io_timeout = v;
			break;
		case 'v':
			if (!strcmp(optarg, "1.2"))
				opt->tls_version = TLS1_2_VERSION;
			else if (!strcmp(optarg, "1.3"))
				opt->tls_version = TLS1_3_VERSION;
			else {
				fprintf(stderr, "tether-load: --tls is 1.2 or 1.3, not '%s'\n", optarg);
				return 2;
			}
			break;
		case 'T':
			if (strcmp(optarg, "on") && strcmp(optarg, "off")) {
				fprintf(stderr, "tether-load: --tickets is on or off, not '%s'\n", optarg);
				return 2;
			}
			opt->tickets = !strcmp(optarg, "on");
			break;
		case 'S':
			opt->server_name = optarg;
			break;
		case 'p':
			if (opt->pid_count == MAX_PIDS) {
				fprintf(stderr, "tether-load: at most %d --cpu-pid\n", MAX_PIDS);
				return 2;
			}
			if (parse_number("--cpu-pid", optarg, 1, INT_MAX, &v))
				return 2;
			opt->pids[opt->pid_count++] = (pid_t)v;
			break;
		case 'h':
			usage(stdout);
			return 1;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "tether-load: unexpected argument '%s' (see --help)\n", argv[optind]);
		return 2;
	}
	if (!have_target || !have_mode) {
		fprintf(stderr, "tether-load: --target and --mode are required (see --help)\n");
		return 2;
	}
	if (opt->mode == MODE_BULK && !have_threads)
		opt->threads = 2;
	if (opt->mode == MODE_RESUME && opt->source_count == 1) {
		fprintf(stderr, "tether-load: --mode resume needs two --sources at least (a "
			"resumption comes from another address than its creator)\n");
		return 2;
	}
	return 0;
}

/* -- CPU accounting ------------------------------------------------------ */

struct cpu_sample {
	double process;                 /* seconds, summed over the pids */
	double softirq, system, busy;   /* seconds, summed over the CPUs */
	bool pids_ok;
};

/* utime + stime of pid in seconds, or -1 when it cannot be read. */
static double process_seconds(pid_t pid)
{
	char path[64], buf[2048];
	unsigned long long utime, stime;
	const char *p;
	FILE *f;
	size_t n;
	int field;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	f = fopen(path, "r");
	if (!f)
		return -1;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	p = strrchr(buf, ')');              /* the command name may hold spaces */
	if (!p)
		return -1;
	/* p is at field 2's ')'; each step moves to the space before field
	 * (field + 1): end before field 14, utime, and field 15, stime */
	for (field = 2; field < 14 && p; field++)
		p = strchr(p + 1, ' ');
	if (!p || sscanf(p + 1, "%llu %llu", &utime, &stime) != 2)
		return -1;
	return (double)(utime + stime) / (double)sysconf(_SC_CLK_TCK);
}

static void cpu_sample(const struct options *opt, struct cpu_sample *s)
{
	unsigned long long user, nice, system, idle, iowait, irq, softirq, steal;
	double tick = (double)sysconf(_SC_CLK_TCK);
	FILE *f;
	int i;

	memset(s, 0, sizeof(*s));
	s->pids_ok = true;
	for (i = 0; i < opt->pid_count; i++) {
		double t = process_seconds(opt->pids[i]);

		if (t < 0)
			s->pids_ok = false;
		else
			s->process += t;
	}
	f = fopen("/proc/stat", "r");
	if (f && fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &user, &nice,
			&system, &idle, &iowait, &irq, &softirq, &steal) == 8) {
		s->softirq = (double)softirq / tick;
		s->system = (double)system / tick;
		s->busy = (double)(user + nice + system + irq + softirq + steal) / tick;
	}
	if (f)
		fclose(f);
}

/* -- one connection ------------------------------------------------------ */

static void set_error(struct result *r, const char *what, int err)
{
	unsigned long e = ERR_get_error();

	r->ok = false;
	if (e)
		snprintf(r->error, sizeof(r->error), "%s: %s", what, ERR_reason_error_string(e));
	else if (err)
		snprintf(r->error, sizeof(r->error), "%s: %s", what, strerror(err));
	else
		snprintf(r->error, sizeof(r->error), "%s", what);
	ERR_clear_error();
}

static int open_socket(const struct options *opt, uint32_t source, struct result *r)
{
	struct timeval tv = { .tv_sec = (time_t)opt->io_timeout,
			      .tv_usec = (suseconds_t)((opt->io_timeout - (double)(time_t)opt->io_timeout) * 1e6) };
	int one = 1;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0) {
		set_error(r, "socket", errno);
		return -1;
	}
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));  /* bounds connect too */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (opt->source_count) {
		struct sockaddr_in src = { .sin_family = AF_INET,
					   .sin_addr.s_addr = htonl(source) };

		setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
		if (bind(fd, (struct sockaddr *)&src, sizeof(src))) {
			set_error(r, "bind", errno);
			close(fd);
			return -1;
		}
	}
	if (connect(fd, (const struct sockaddr *)&opt->target, sizeof(opt->target))) {
		set_error(r, "connect", errno);
		close(fd);
		return -1;
	}
	return fd;
}

/* Reads lab_server.py's identity ("server=beN ... reused=N") from the head. */
static void read_identity(const char *head, struct result *r)
{
	const char *p = strstr(head, "server=be");
	const char *q = strstr(head, "reused=");

	if (p && p[9] >= '1' && p[9] <= '8' && (p[10] == ' ' || p[10] == '\r'))
		r->backend = p[9] - '0';
	r->server_reused = q && q[7] == '1';
}

/* Bulk: bytes count as they arrive, inside the timed window only, so the
 * downloads cut by the window's end count for what they got within it. */
static void live_bytes(struct run *run, uint64_t n)
{
	if (run->opt->mode == MODE_BULK && run->timed && !atomic_load(&run->closed))
		atomic_fetch_add(&run->totals.bytes, n);
}

/* One whole connection: handshake (offering session if not NULL), request,
 * answer read to close_notify, close_notify sent, close.  Fills r; keeps the
 * TLS session in *kept when kept is not NULL. */
static void one_connection(struct run *run, uint32_t source, SSL_SESSION *session,
			   SSL_SESSION **kept, struct result *r)
{
	const struct options *opt = run->opt;
	char request[256], buf[16384], head[HEAD_MAX + 1];
	size_t head_len = 0;
	bool in_body = false;
	SSL *ssl = NULL;
	int fd, n;

	memset(r, 0, sizeof(*r));
	fd = open_socket(opt, source, r);
	if (fd < 0)
		return;
	ssl = SSL_new(run->ctx);
	if (!ssl || !SSL_set_fd(ssl, fd)) {
		set_error(r, "SSL_new", 0);
		goto out;
	}
	if (opt->server_name)
		SSL_set_tlsext_host_name(ssl, opt->server_name);
	if (session)
		SSL_set_session(ssl, session);
	if (SSL_connect(ssl) != 1) {
		set_error(r, "handshake", errno);
		goto out;
	}
	r->reused = SSL_session_reused(ssl);
	if (opt->mode == MODE_BULK && run->timed)
		snprintf(request, sizeof(request), "GET /bytes/%" PRIu64 " HTTP/1.1\r\n"
			 "Host: lab\r\nConnection: close\r\n\r\n", opt->bulk_bytes);
	else
		snprintf(request, sizeof(request),
			 "GET / HTTP/1.1\r\nHost: lab\r\nConnection: close\r\n\r\n");
	if (SSL_write(ssl, request, (int)strlen(request)) <= 0) {
		set_error(r, "write", errno);
		goto out;
	}
	for (;;) {
		n = SSL_read(ssl, buf, sizeof(buf));
		if (n <= 0)
			break;
		if (in_body) {
			r->body_bytes += (uint64_t)n;
			live_bytes(run, (uint64_t)n);
			continue;
		}
		/* keep the head until its blank line; the rest is body */
		{
			size_t take = (size_t)n;
			char *end;

			if (take > HEAD_MAX - head_len)
				take = HEAD_MAX - head_len;
			memcpy(head + head_len, buf, take);
			head_len += take;
			head[head_len] = '\0';
			end = strstr(head, "\r\n\r\n");
			if (end) {
				size_t head_total = (size_t)(end - head) + 4;

				in_body = true;
				r->body_bytes = head_len - head_total + ((size_t)n - take);
				live_bytes(run, r->body_bytes);
				read_identity(head, r);
			} else if (head_len == HEAD_MAX) {
				set_error(r, "answer head over 4 KiB", 0);
				goto out;
			}
		}
	}
	if (SSL_get_error(ssl, n) != SSL_ERROR_ZERO_RETURN) {
		set_error(r, "read (no close_notify)", errno);
		goto out;
	}
	if (!in_body) {
		set_error(r, "no HTTP answer", 0);
		goto out;
	}
	SSL_shutdown(ssl);                  /* our close_notify; the server then FINs */
	r->ok = true;
	if (kept)
		*kept = SSL_get1_session(ssl);
out:
	SSL_free(ssl);
	close(fd);
}

/* -- threads ------------------------------------------------------------- */

static bool past(const struct timespec *deadline)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec > deadline->tv_sec ||
	       (ts.tv_sec == deadline->tv_sec && ts.tv_nsec >= deadline->tv_nsec);
}

static struct timespec deadline_after(double seconds)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_sec += (time_t)seconds;
	ts.tv_nsec += (long)((seconds - (double)(time_t)seconds) * 1e9);
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	return ts;
}

static void count(struct run *run, const struct result *r)
{
	struct totals *t = &run->totals;

	if (run->timed && atomic_load(&run->closed)) {
		atomic_fetch_add(&run->late, 1);
		return;
	}
	if (!r->ok) {
		atomic_fetch_add(&t->failed, 1);
		pthread_mutex_lock(&t->error_lock);
		if (!t->first_error[0])
			snprintf(t->first_error, sizeof(t->first_error), "%s", r->error);
		pthread_mutex_unlock(&t->error_lock);
		return;
	}
	atomic_fetch_add(&t->ok, 1);
	if (run->opt->mode != MODE_BULK)
		atomic_fetch_add(&t->bytes, r->body_bytes);
	{
		uint64_t us = (uint64_t)(r->seconds * 1e6);
		uint64_t ms = us / 1000, max = atomic_load(&t->latency_max_us);

		atomic_fetch_add(&t->latency_ms[ms < LATENCY_BUCKETS ? ms : LATENCY_BUCKETS - 1], 1);
		while (us > max && !atomic_compare_exchange_weak(&t->latency_max_us, &max, us))
			;
	}
	atomic_fetch_add(&t->backends[r->backend], 1);
	if (r->reused)
		atomic_fetch_add(&t->reused, 1);
	if (r->server_reused)
		atomic_fetch_add(&t->server_reused, 1);
}

/* Connection j's source address, and for resume the session it offers. */
static uint32_t pick(const struct run *run, uint64_t j, SSL_SESSION **session)
{
	const struct options *opt = run->opt;
	uint32_t n = opt->source_count;

	*session = NULL;
	if (!n)
		return 0;
	if (run->timed && opt->mode == MODE_RESUME) {
		uint64_t k = j % (uint64_t)run->session_count;
		uint32_t creator = run->session_source[k];
		/* another address than the creator's, a different one each round */
		uint32_t step = 1 + (uint32_t)((j / (uint64_t)run->session_count) % (n - 1));

		*session = run->sessions[k];
		return opt->source_first + (creator + step) % n;
	}
	return opt->source_first + (uint32_t)(j % n);
}

static void *worker(void *arg)
{
	struct run *run = arg;

	for (;;) {
		uint64_t j;
		SSL_SESSION *session;
		uint32_t source;
		struct result r;

		if (run->timed && past(&run->deadline))
			break;
		j = atomic_fetch_add(&run->totals.started, 1);
		if (j >= run->limit)
			break;
		source = pick(run, j, &session);
		double t0 = now_seconds();
		if (!run->timed) {          /* resume's preparation: keep the sessions */
			one_connection(run, source, NULL, &run->sessions[j], &r);
			run->session_source[j] = source - run->opt->source_first;
		} else {
			one_connection(run, source, session, NULL, &r);
		}
		r.seconds = now_seconds() - t0;
		count(run, &r);
	}
	atomic_fetch_add(&run->workers_done, 1);
	return NULL;
}

/* Runs --threads workers until the phase's limit or deadline; 0 or -1.  When
 * timed, the window closes at the deadline (or when every worker is done,
 * if sooner): *seconds and the CPU samples span exactly that window, and
 * connections still in flight then finish uncounted (run->late). */
static int run_phase(struct run *run, double *seconds, struct cpu_sample *before,
		     struct cpu_sample *after)
{
	pthread_t threads[MAX_THREADS];
	int i, started = 0, rc = 0;
	double t0 = 0;

	atomic_store(&run->workers_done, 0);
	if (run->timed) {
		cpu_sample(run->opt, before);
		t0 = now_seconds();
		run->deadline = deadline_after(run->opt->seconds);
	}
	for (i = 0; i < run->opt->threads; i++) {
		if (pthread_create(&threads[i], NULL, worker, run)) {
			fprintf(stderr, "tether-load: cannot start thread %d\n", i);
			rc = -1;
			break;
		}
		started++;
	}
	if (run->timed) {
		struct timespec tick = { .tv_sec = 0, .tv_nsec = 5000000 };

		while (!past(&run->deadline) && atomic_load(&run->workers_done) < started)
			nanosleep(&tick, NULL);
		atomic_store(&run->closed, true);
		*seconds = now_seconds() - t0;
		cpu_sample(run->opt, after);
	}
	for (i = 0; i < started; i++)
		pthread_join(threads[i], NULL);
	return rc;
}

static void reset_totals(struct totals *t)
{
	int i;

	atomic_store(&t->started, 0);
	atomic_store(&t->ok, 0);
	atomic_store(&t->failed, 0);
	atomic_store(&t->reused, 0);
	atomic_store(&t->server_reused, 0);
	atomic_store(&t->bytes, 0);
	for (i = 0; i < MAX_BACKENDS; i++)
		atomic_store(&t->backends[i], 0);
	for (i = 0; i < LATENCY_BUCKETS; i++)
		atomic_store(&t->latency_ms[i], 0);
	atomic_store(&t->latency_max_us, 0);
	t->first_error[0] = '\0';
}

static SSL_CTX *make_context(const struct options *opt)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

	if (!ctx)
		return NULL;
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_max_proto_version(ctx, opt->tls_version);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);     /* load, not trust */
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	if (!opt->tickets)
		SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
	return ctx;
}

static const char *mode_name(enum mode m)
{
	return m == MODE_NEW ? "new" : m == MODE_RESUME ? "resume" : "bulk";
}

/* The upper edge (ms) of the bucket holding quantile q of the ok connections'
 * durations; 0 when there were none. */
static double latency_quantile(const struct totals *t, uint64_t ok, double q)
{
	uint64_t want = (uint64_t)(q * (double)ok), seen = 0;
	int i;

	if (!ok)
		return 0;
	for (i = 0; i < LATENCY_BUCKETS; i++) {
		seen += atomic_load(&t->latency_ms[i]);
		if (seen > want)
			return i + 1;
	}
	return LATENCY_BUCKETS;
}

static void print_document(const struct run *run, double seconds,
			   const struct cpu_sample *a, const struct cpu_sample *b)
{
	const struct options *opt = run->opt;
	const struct totals *t = &run->totals;
	uint64_t ok = atomic_load(&t->ok), failed = atomic_load(&t->failed);
	uint64_t bytes = atomic_load(&t->bytes);
	const char *sep = "";
	int i;

	printf("{\"mode\": \"%s\", \"target\": \"%s\", \"threads\": %d, \"seconds\": %.3f, "
	       "\"connections\": %" PRIu64 ", \"ok\": %" PRIu64 ", \"failed\": %" PRIu64 ", "
	       "\"per_second\": %.1f, \"reused\": %" PRIu64 ", \"server_reused\": %" PRIu64 ", "
	       "\"reused_fraction\": %.4f, \"bytes\": %" PRIu64 ", \"bytes_per_second\": %.0f, ",
	       mode_name(opt->mode), opt->target_text, opt->threads, seconds, ok + failed, ok,
	       failed, seconds > 0 ? (double)ok / seconds : 0.0, atomic_load(&t->reused),
	       atomic_load(&t->server_reused),
	       ok ? (double)atomic_load(&t->reused) / (double)ok : 0.0, bytes,
	       seconds > 0 ? (double)bytes / seconds : 0.0);
	if (opt->mode == MODE_RESUME)
		printf("\"sessions\": %d, ", run->session_count);
	printf("\"backends\": {");
	for (i = 0; i < MAX_BACKENDS; i++) {
		uint64_t c = atomic_load(&t->backends[i]);

		if (!c)
			continue;
		if (i)
			printf("%s\"be%d\": %" PRIu64, sep, i, c);
		else
			printf("%s\"other\": %" PRIu64, sep, c);
		sep = ", ";
	}
	printf("}, \"latency_ms\": {\"p50\": %.0f, \"p99\": %.0f, \"max\": %.1f}",
	       latency_quantile(t, ok, 0.50), latency_quantile(t, ok, 0.99),
	       (double)atomic_load(&t->latency_max_us) / 1000.0);
	printf(", \"late\": %" PRIu64 ", \"first_error\": ", atomic_load(&run->late));
	if (t->first_error[0]) {
		putchar('"');
		for (const char *p = t->first_error; *p; p++)
			putchar(*p == '"' || *p == '\\' || (unsigned char)*p < 0x20 ? '?' : *p);
		putchar('"');
	} else {
		printf("null");
	}
	printf(", \"cpu\": {\"pids\": [");
	for (i = 0; i < opt->pid_count; i++)
		printf("%s%d", i ? ", " : "", (int)opt->pids[i]);
	printf("], \"pids_alive\": %s, \"process_s\": %.3f, \"softirq_s\": %.3f, "
	       "\"system_s\": %.3f, \"busy_s\": %.3f, \"cpus\": %ld}}\n",
	       a->pids_ok && b->pids_ok ? "true" : "false", b->process - a->process,
	       b->softirq - a->softirq, b->system - a->system, b->busy - a->busy,
	       sysconf(_SC_NPROCESSORS_ONLN));
}

int main(int argc, char **argv)
{
	struct options opt;
	struct run run;
	struct cpu_sample before, after;
	double seconds = 0;
	int rc = parse_options(argc, argv, &opt);

	if (rc)
		return rc == 1 ? 0 : rc;
	signal(SIGPIPE, SIG_IGN);
	/* Whatever happens below, the process ends: the timed phase, then in-flight
	 * connections bounded by the I/O timeout, plus resume's preparation. */
	alarm((unsigned)(opt.seconds + 4 * opt.io_timeout) + 60);

	memset(&run, 0, sizeof(run));
	run.opt = &opt;
	pthread_mutex_init(&run.totals.error_lock, NULL);
	run.ctx = make_context(&opt);
	if (!run.ctx) {
		fprintf(stderr, "tether-load: SSL_CTX_new failed\n");
		return 2;
	}
	if (opt.mode == MODE_RESUME) {
		int i, kept = 0;

		run.sessions = calloc((size_t)opt.sessions, sizeof(*run.sessions));
		run.session_source = calloc((size_t)opt.sessions, sizeof(*run.session_source));
		if (!run.sessions || !run.session_source) {
			fprintf(stderr, "tether-load: out of memory\n");
			return 2;
		}
		run.limit = (uint64_t)opt.sessions;
		if (run_phase(&run, NULL, NULL, NULL))
			return 2;
		/* keep the sessions made, packed */
		for (i = 0; i < opt.sessions; i++) {
			if (!run.sessions[i])
				continue;
			run.sessions[kept] = run.sessions[i];
			run.session_source[kept++] = run.session_source[i];
		}
		run.session_count = kept;
		if (!kept) {
			fprintf(stderr, "tether-load: none of %d full handshakes succeeded (first "
				"error: %s): nothing to resume\n", opt.sessions,
				run.totals.first_error[0] ? run.totals.first_error : "none");
			return 1;
		}
		reset_totals(&run.totals);
	}
	run.timed = true;
	run.limit = opt.max_connections;
	if (run_phase(&run, &seconds, &before, &after))
		return 2;
	print_document(&run, seconds, &before, &after);
	fflush(stdout);
	for (int i = 0; i < run.session_count; i++)
		SSL_SESSION_free(run.sessions[i]);
	free(run.sessions);
	free(run.session_source);
	SSL_CTX_free(run.ctx);
	return atomic_load(&run.totals.failed) ? 1 : 0;
}
