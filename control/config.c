/*
 * config.c: tether's configuration loader and validator.
 *
 * config_parse() is a pure function from bytes to a result.  jansson parses the
 * document (duplicate keys refused); then one short function per JSON object
 * type walks its object: it refuses keys it does not know, reads each member
 * with an explicit type and range check, and records every problem with the
 * JSON path it is about instead of stopping at the first, so an operator fixes
 * a file in one pass.  Rules that span objects (a service's pool must exist,
 * no two services on one VIP:port, names unique) run once their objects are
 * read.  Nothing here exits, prints or keeps global state: tether-control
 * calls it on reload and keeps the running config when it refuses, and the
 * fuzzer calls it on arbitrary bytes.
 *
 * Trade-offs: a member that fails its check leaves the field at its default,
 * and later rules skip values that cannot be valid (address 0, port 0, empty
 * name), so one mistake yields one error rather than a cascade.  Paths are
 * built on the stack, one buffer per level; a path longer than 191 bytes is
 * truncated, which only happens with absurd keys.
 */
#include "config.h"

#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#define PATH_SIZE       sizeof(((struct config_error *)0)->path)
#define FILE_SIZE_MAX   (4u << 20)          /* config_load_file refuses more */
#define QUOTE_MAX       48                  /* user text quoted in a message */

#define CAPACITY_MIN    1024
#define CAPACITY_MAX    16777216
#define TIMEOUT_S_MIN   1
#define TIMEOUT_S_MAX   86400
#define MAGLEV_SIZE_MIN 251
#define MAGLEV_SIZE_MAX 1000003
#define WEIGHT_MAX      1000
#define PORT_MIN        1
#define PORT_MAX        65535
#define SOURCE_PREFIX_MIN 8
#define HEALTH_MS_MAX   3600000             /* an hour between checks is plenty */
#define HEALTH_INTERVAL_MS_MIN 100
#define HEALTH_COUNT_MAX 100
#define SOCKET_PATH_MAX (sizeof(((struct sockaddr_un *)0)->sun_path) - 1)

/* Everything a validation pass needs; lives on config_parse()'s stack. */
struct parser {
	struct config *config;
	struct config_errors *errors;
	bool pools_known;       /* "pools" held pools: a name not among them is an error */
};

/* What reading one member found; the value is stored only for FIELD_OK. */
enum field {
	FIELD_ABSENT,
	FIELD_OK,
	FIELD_INVALID,
};

/* Names for the enums of config.h, indexed by enum value, NULL-terminated. */
static const char *const protocol_names[] = { "tcp", "udp", NULL };
static const char *const persistence_names[] = { "none", "source-ip", "ssl-session", NULL };
static const char *const fallback_names[] = { "source-ip", "source-ip+sni", "none", NULL };
static const char *const syn_cookies_names[] = { "auto", "always", "never", NULL };
static const char *const health_names[] = { "none", "tcp", "tls", "http", "https", NULL };

/* The keys each object type may hold; anything else is reported. */
static const char *const top_keys[] = { "dataplane", "control", "services", "pools", NULL };
static const char *const dataplane_keys[] = {
	"workers", "ports", "flows", "sessions", "maglev", "binding", "overload", "idle_sleep_us", NULL };
static const char *const ports_keys[] = { "public", "private", NULL };
static const char *const port_keys[] = { "device", "address", "gateway", NULL };
static const char *const flows_keys[] = {
	"capacity", "tcp_syn_timeout_s", "tcp_established_timeout_s",
	"tcp_fin_timeout_s", "tcp_close_timeout_s", "udp_timeout_s", NULL };
static const char *const sessions_keys[] = { "capacity", NULL };
static const char *const maglev_keys[] = { "table_size", NULL };
static const char *const binding_keys[] = { "capacity", "inspect_timeout_ms", NULL };
static const char *const overload_keys[] = {
	"half_open", "syn_cookie_percent", "refuse_percent", NULL };
static const char *const control_keys[] = { "socket", "metrics", NULL };
static const char *const service_keys[] = {
	"name", "vip", "port", "protocol", "pool", "target_port",
	"persistence", "syn_cookies", "allow_from", NULL };
static const char *const persistence_keys[] = {
	"mode", "fallback", "timeout_s", "source_prefix", NULL };
static const char *const pool_keys[] = { "backends", "health", NULL };
static const char *const backend_keys[] = {
	"name", "address", "port", "weight", "enabled", "fqdn", NULL };
static const char *const health_keys[] = {
	"type", "port", "interval_ms", "timeout_ms", "rise", "fall", "ca", "path",
	"expect_status", NULL };

/* ------------------------------------------------------------------------ */
/* Small text helpers                                                        */

/* vsnprintf into `out`; truncation is acceptable for paths and messages. */
static void format_into(char *out, size_t size, const char *format, ...)
	__attribute__((format(printf, 3, 4)));

static void
format_into(char *out, size_t size, const char *format, ...)
{
	va_list args;

	va_start(args, format);
	vsnprintf(out, size, format, args);
	va_end(args);
}

/*
 * Copy user-supplied `text` into `out` (QUOTE_MAX + 4 bytes) for a message:
 * non-printable bytes become '?' and long text ends in "...", so a hostile
 * key cannot put control characters or a megabyte into a log line.
 */
static const char *
quote(const char *text, char *out)
{
	size_t i;

	for (i = 0; text[i] != '\0' && i < QUOTE_MAX; i++)
		out[i] = (text[i] >= 0x20 && text[i] < 0x7f) ? text[i] : '?';
	if (text[i] != '\0') {
		memcpy(out + i, "...", 3);
		i += 3;
	}
	out[i] = '\0';
	return out;
}

static bool
in_list(const char *word, const char *const list[])
{
	for (unsigned i = 0; list[i] != NULL; i++)
		if (strcmp(word, list[i]) == 0)
			return true;
	return false;
}

/* "a, b or c" from a NULL-terminated list, for "expected one of" messages. */
static void
join_names(const char *const names[], char *out, size_t size)
{
	size_t used = 0;

	out[0] = '\0';
	for (unsigned i = 0; names[i] != NULL && used < size; i++) {
		const char *separator = i == 0 ? "" : names[i + 1] == NULL ? " or " : ", ";
		int n = snprintf(out + used, size - used, "%s%s", separator, names[i]);
		if (n < 0)
			break;
		used += (size_t)n;
	}
}

static const char *
json_kind(const json_t *value)
{
	switch (json_typeof(value)) {
	case JSON_OBJECT:  return "an object";
	case JSON_ARRAY:   return "an array";
	case JSON_STRING:  return "a string";
	case JSON_INTEGER: return "an integer";
	case JSON_REAL:    return "a real number";
	case JSON_TRUE:
	case JSON_FALSE:   return "a boolean";
	case JSON_NULL:    return "null";
	}
	return "an unknown value";
}

/* ------------------------------------------------------------------------ */
/* Errors and paths                                                          */

/* Record one error; past CONFIG_ERRORS_MAX only the count grows. */
static void report(struct parser *parser, const char *path, const char *format, ...)
	__attribute__((format(printf, 3, 4)));

static void
report(struct parser *parser, const char *path, const char *format, ...)
{
	struct config_errors *errors = parser->errors;

	if (errors->count < CONFIG_ERRORS_MAX) {
		struct config_error *error = &errors->errors[errors->count];
		va_list args;

		format_into(error->path, sizeof error->path, "%s", path);
		va_start(args, format);
		vsnprintf(error->message, sizeof error->message, format, args);
		va_end(args);
	}
	errors->count++;
}

static bool
is_alphanumeric(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

/* A key that can follow a '.' in a path without ambiguity. */
static bool
key_is_plain(const char *key)
{
	if (key[0] == '\0')
		return false;
	for (const char *c = key; *c != '\0'; c++)
		if (!is_alphanumeric(*c) && *c != '_' && *c != '-')
			return false;
	return true;
}

/*
 * The path of member `key` of the object at `parent`: "$.pools.cp", or
 * "$.pools[\"cp.v2\"]" when the key holds characters a dotted path would
 * misread ('.', spaces, quotes; control bytes are written as '?').
 */
static void
path_member(char *out, const char *parent, const char *key)
{
	char escaped[PATH_SIZE];
	size_t used = 0;

	if (key_is_plain(key)) {
		format_into(out, PATH_SIZE, "%s.%s", parent, key);
		return;
	}
	for (const char *c = key; *c != '\0' && used + 3 < sizeof escaped; c++) {
		if (*c == '"' || *c == '\\')
			escaped[used++] = '\\';
		escaped[used++] = (*c >= 0x20 && *c < 0x7f) ? *c : '?';
	}
	escaped[used] = '\0';
	format_into(out, PATH_SIZE, "%s[\"%s\"]", parent, escaped);
}

static void
path_index(char *out, const char *parent, size_t index)
{
	format_into(out, PATH_SIZE, "%s[%zu]", parent, index);
}

/* ------------------------------------------------------------------------ */
/* Addresses                                                                 */

static uint32_t
prefix_mask(unsigned length)
{
	return length == 0 ? 0 : UINT32_MAX << (32 - length);
}

/*
 * Strict dotted quad: exactly four decimal octets 0..255 separated by dots,
 * nothing before or after.  A leading zero ("01.2.3.4") is refused because
 * inet_aton() would read it as octal; refusing is less surprising than
 * picking either reading.
 */
int
config_parse_ipv4(const char *text, uint32_t *address)
{
	const char *c = text;
	uint32_t result = 0;

	if (text == NULL || address == NULL)
		return -EINVAL;
	for (unsigned octet = 0; octet < 4; octet++) {
		unsigned value = 0, digits = 0;

		if (octet > 0 && *c++ != '.')
			return -EINVAL;
		if (c[0] == '0' && c[1] >= '0' && c[1] <= '9')
			return -EINVAL;
		for (; *c >= '0' && *c <= '9'; c++) {
			if (++digits > 3)
				return -EINVAL;
			value = value * 10 + (unsigned)(*c - '0');
		}
		if (digits == 0 || value > 255)
			return -EINVAL;
		result = result << 8 | value;
	}
	if (*c != '\0')
		return -EINVAL;
	*address = result;
	return 0;
}

/* "0".."32" without sign, spaces or leading zeros. */
static int
parse_prefix_length(const char *text, uint8_t *length)
{
	unsigned value = 0;

	if (text[0] < '0' || text[0] > '9' || (text[0] == '0' && text[1] != '\0'))
		return -EINVAL;
	for (const char *c = text; *c != '\0'; c++) {
		if (*c < '0' || *c > '9' || c - text >= 2)
			return -EINVAL;
		value = value * 10 + (unsigned)(*c - '0');
	}
	if (value > 32)
		return -EINVAL;
	*length = (uint8_t)value;
	return 0;
}

/*
 * Split "a.b.c.d/len" (or "a.b.c.d" when `length_optional`, meaning /32)
 * without judging host bits: an interface address has them set on purpose.
 */
static int
parse_address_and_length(const char *text, bool length_optional,
			 uint32_t *address, uint8_t *length)
{
	const char *slash = strchr(text, '/');
	char head[16];

	if (slash == NULL) {
		if (!length_optional)
			return -EINVAL;
		*length = 32;
		return config_parse_ipv4(text, address);
	}
	if ((size_t)(slash - text) >= sizeof head)
		return -EINVAL;
	memcpy(head, text, (size_t)(slash - text));
	head[slash - text] = '\0';
	if (config_parse_ipv4(head, address) != 0)
		return -EINVAL;
	return parse_prefix_length(slash + 1, length);
}

/* A prefix ("a.b.c.d/len", or a bare address as /32) with no host bits set. */
int
config_parse_prefix(const char *text, struct config_prefix *prefix)
{
	uint32_t address;
	uint8_t length;

	if (text == NULL || prefix == NULL ||
	    parse_address_and_length(text, true, &address, &length) != 0 ||
	    (address & ~prefix_mask(length)) != 0)
		return -EINVAL;
	prefix->address = address;
	prefix->length = length;
	return 0;
}

const char *
config_format_ipv4(uint32_t address, char *buffer)
{
	snprintf(buffer, 16, "%u.%u.%u.%u", (unsigned)(address >> 24),
		 (unsigned)(address >> 16 & 0xff), (unsigned)(address >> 8 & 0xff),
		 (unsigned)(address & 0xff));
	return buffer;
}

/* 0/8 (this network), 127/8 (loopback) and 224/3 (multicast, reserved,
 * broadcast) can never be a VIP, a port or a backend of a NAT balancer. */
static bool
is_unicast(uint32_t address)
{
	uint32_t first = address >> 24;

	return first != 0 && first != 127 && first < 224;
}

/* ------------------------------------------------------------------------ */
/* Reading one member                                                        */

/*
 * Look up member `key` of `object` and write its path into `path`.  A
 * missing required member is reported at that path.  Returns the member or
 * NULL when absent.
 */
static json_t *
member(struct parser *parser, const json_t *object, const char *parent,
       const char *key, bool required, char *path)
{
	json_t *value = json_object_get(object, key);

	path_member(path, parent, key);
	if (value == NULL && required)
		report(parser, path, "required key '%s' is missing", key);
	return value;
}

/* Report `value` unless it is an object; then report each key not in
 * `known`.  Returns true when the caller may read members from it. */
static bool
check_object(struct parser *parser, json_t *value, const char *path,
	     const char *const known[])
{
	const char *key;
	json_t *child;

	if (!json_is_object(value)) {
		report(parser, path, "expected an object, got %s", json_kind(value));
		return false;
	}
	json_object_foreach(value, key, child) {
		char child_path[PATH_SIZE], quoted[QUOTE_MAX + 4];

		if (in_list(key, known))
			continue;
		path_member(child_path, path, key);
		report(parser, child_path, "unknown key '%s'", quote(key, quoted));
	}
	return true;
}

/* A non-empty string shorter than `size`, copied into `out`. */
static bool
read_string(struct parser *parser, const json_t *value, const char *path,
	    char *out, size_t size)
{
	size_t length;

	if (!json_is_string(value)) {
		report(parser, path, "expected a string, got %s", json_kind(value));
		return false;
	}
	length = json_string_length(value);
	if (length == 0) {
		report(parser, path, "must not be empty");
		return false;
	}
	if (length >= size) {
		report(parser, path, "longer than %zu characters", size - 1);
		return false;
	}
	memcpy(out, json_string_value(value), length + 1);
	return true;
}

/*
 * An integer in [min, max].  Reals are refused even when integral ("443.0",
 * "1e3"): a count or a port written as a real is a mistake worth naming.
 * jansson already refuses integers beyond 64 bits at parse time.
 */
static bool
read_integer(struct parser *parser, const json_t *value, const char *path,
	     long long min, long long max, uint32_t *out)
{
	json_int_t number;

	if (json_is_real(value)) {
		report(parser, path, "expected an integer, got a real number (%g)",
		       json_real_value(value));
		return false;
	}
	if (!json_is_integer(value)) {
		report(parser, path, "expected an integer, got %s", json_kind(value));
		return false;
	}
	number = json_integer_value(value);
	if (number < min || number > max) {
		report(parser, path, "%lld is out of range %lld..%lld",
		       (long long)number, min, max);
		return false;
	}
	*out = (uint32_t)number;
	return true;
}

static bool
read_boolean(struct parser *parser, const json_t *value, const char *path, bool *out)
{
	if (!json_is_boolean(value)) {
		report(parser, path, "expected true or false, got %s", json_kind(value));
		return false;
	}
	*out = json_is_true(value);
	return true;
}

/* One of `names`; *out is its index (the matching enum value). */
static bool
read_choice(struct parser *parser, const json_t *value, const char *path,
	    const char *const names[], unsigned *out)
{
	char text[64], quoted[QUOTE_MAX + 4], expected[128];

	if (!json_is_string(value)) {
		report(parser, path, "expected a string, got %s", json_kind(value));
		return false;
	}
	for (unsigned i = 0; names[i] != NULL; i++) {
		if (strcmp(json_string_value(value), names[i]) == 0) {
			*out = i;
			return true;
		}
	}
	format_into(text, sizeof text, "%s", json_string_value(value));
	join_names(names, expected, sizeof expected);
	report(parser, path, "'%s' is not one of %s", quote(text, quoted), expected);
	return false;
}

/* Names of services, pools and backends: [A-Za-z0-9_.-]+, < CONFIG_NAME_MAX. */
static bool
name_is_valid(const char *name)
{
	size_t length = strlen(name);

	if (length == 0 || length >= CONFIG_NAME_MAX)
		return false;
	for (const char *c = name; *c != '\0'; c++)
		if (!is_alphanumeric(*c) && *c != '_' && *c != '.' && *c != '-')
			return false;
	return true;
}

static void
report_bad_name(struct parser *parser, const char *path, const char *name)
{
	char quoted[QUOTE_MAX + 4];

	report(parser, path, "'%s' is not a valid name: use 1..%d letters, digits, "
	       "'_', '.' or '-'", quote(name, quoted), CONFIG_NAME_MAX - 1);
}

static bool
read_name(struct parser *parser, const json_t *value, const char *path,
	  char out[CONFIG_NAME_MAX])
{
	if (!json_is_string(value)) {
		report(parser, path, "expected a string, got %s", json_kind(value));
		return false;
	}
	if (!name_is_valid(json_string_value(value))) {
		report_bad_name(parser, path, json_string_value(value));
		return false;
	}
	memcpy(out, json_string_value(value), json_string_length(value) + 1);
	return true;
}

/* A unicast IPv4 address "a.b.c.d". */
static bool
read_address(struct parser *parser, const json_t *value, const char *path,
	     uint32_t *out)
{
	char quoted[QUOTE_MAX + 4];
	uint32_t address;

	if (!json_is_string(value)) {
		report(parser, path, "expected a string, got %s", json_kind(value));
		return false;
	}
	if (config_parse_ipv4(json_string_value(value), &address) != 0) {
		report(parser, path, "'%s' is not an IPv4 address (a.b.c.d)",
		       quote(json_string_value(value), quoted));
		return false;
	}
	if (!is_unicast(address)) {
		report(parser, path, "%s is not a unicast address",
		       quote(json_string_value(value), quoted));
		return false;
	}
	*out = address;
	return true;
}

/*
 * The member readers: look `key` up in `object` (reporting it if required
 * and missing), check it, store it.  Each returns FIELD_ABSENT, FIELD_OK or
 * FIELD_INVALID; the output is written only for FIELD_OK, so defaults set
 * beforehand survive an absent or invalid member.
 */
static enum field
member_string(struct parser *parser, const json_t *object, const char *parent,
	      const char *key, bool required, char *out, size_t size)
{
	char path[PATH_SIZE];
	json_t *value = member(parser, object, parent, key, required, path);

	if (value == NULL)
		return FIELD_ABSENT;
	return read_string(parser, value, path, out, size) ? FIELD_OK : FIELD_INVALID;
}

static enum field
member_integer(struct parser *parser, const json_t *object, const char *parent,
	       const char *key, bool required, long long min, long long max,
	       uint32_t *out)
{
	char path[PATH_SIZE];
	json_t *value = member(parser, object, parent, key, required, path);

	if (value == NULL)
		return FIELD_ABSENT;
	return read_integer(parser, value, path, min, max, out) ? FIELD_OK : FIELD_INVALID;
}

static enum field
member_port(struct parser *parser, const json_t *object, const char *parent,
	    const char *key, bool required, uint16_t *out)
{
	uint32_t port;
	enum field result = member_integer(parser, object, parent, key, required,
					   PORT_MIN, PORT_MAX, &port);

	if (result == FIELD_OK)
		*out = (uint16_t)port;
	return result;
}

static enum field
member_boolean(struct parser *parser, const json_t *object, const char *parent,
	       const char *key, bool *out)
{
	char path[PATH_SIZE];
	json_t *value = member(parser, object, parent, key, false, path);

	if (value == NULL)
		return FIELD_ABSENT;
	return read_boolean(parser, value, path, out) ? FIELD_OK : FIELD_INVALID;
}

static enum field
member_choice(struct parser *parser, const json_t *object, const char *parent,
	      const char *key, bool required, const char *const names[],
	      unsigned *out)
{
	char path[PATH_SIZE];
	json_t *value = member(parser, object, parent, key, required, path);

	if (value == NULL)
		return FIELD_ABSENT;
	return read_choice(parser, value, path, names, out) ? FIELD_OK : FIELD_INVALID;
}

static enum field
member_name(struct parser *parser, const json_t *object, const char *parent,
	    const char *key, char out[CONFIG_NAME_MAX])
{
	char path[PATH_SIZE];
	json_t *value = member(parser, object, parent, key, true, path);

	if (value == NULL)
		return FIELD_ABSENT;
	return read_name(parser, value, path, out) ? FIELD_OK : FIELD_INVALID;
}

static enum field
member_address(struct parser *parser, const json_t *object, const char *parent,
	       const char *key, bool required, uint32_t *out)
{
	char path[PATH_SIZE];
	json_t *value = member(parser, object, parent, key, required, path);

	if (value == NULL)
		return FIELD_ABSENT;
	return read_address(parser, value, path, out) ? FIELD_OK : FIELD_INVALID;
}

/* ------------------------------------------------------------------------ */
/* dataplane                                                                 */

/*
 * "address": "a.b.c.d/len", the port's own address and on-link prefix.
 * Host bits are expected here; the network and broadcast addresses of a
 * prefix that has them are refused since no host can own them.
 */
static void
parse_port_address(struct parser *parser, const json_t *object, const char *parent,
		   struct config_port *port)
{
	char path[PATH_SIZE], quoted[QUOTE_MAX + 4];
	json_t *value = member(parser, object, parent, "address", true, path);
	uint32_t address, host_mask;
	uint8_t length;

	if (value == NULL)
		return;
	if (!json_is_string(value)) {
		report(parser, path, "expected a string, got %s", json_kind(value));
		return;
	}
	quote(json_string_value(value), quoted);
	if (parse_address_and_length(json_string_value(value), false, &address, &length) != 0) {
		report(parser, path, "'%s' is not an address with its prefix length "
		       "(a.b.c.d/len)", quoted);
		return;
	}
	host_mask = ~prefix_mask(length);
	if (length == 0 || !is_unicast(address)) {
		report(parser, path, "%s is not a unicast address with a prefix "
		       "length of 1..32", quoted);
		return;
	}
	if (length <= 30 && ((address & host_mask) == 0 ||
			     (address & host_mask) == host_mask)) {
		report(parser, path, "%s is the network or broadcast address of its "
		       "prefix", quoted);
		return;
	}
	port->address = address;
	port->prefix_length = length;
}

/* "gateway": optional next hop; it must be on the port's own prefix. */
static void
parse_port_gateway(struct parser *parser, const json_t *object, const char *parent,
		   struct config_port *port)
{
	char path[PATH_SIZE], gateway_text[16], network_text[16];
	uint32_t gateway, mask = prefix_mask(port->prefix_length);

	if (member_address(parser, object, parent, "gateway", false, &gateway) != FIELD_OK)
		return;
	path_member(path, parent, "gateway");
	config_format_ipv4(gateway, gateway_text);
	if (port->address == 0) {
		port->gateway = gateway;        /* address already reported */
	} else if ((gateway & mask) != (port->address & mask)) {
		report(parser, path, "gateway %s is outside the port's prefix %s/%u",
		       gateway_text, config_format_ipv4(port->address & mask, network_text),
		       port->prefix_length);
	} else if (gateway == port->address) {
		report(parser, path, "gateway %s is the port's own address", gateway_text);
	} else {
		port->gateway = gateway;
	}
}

static void
parse_port(struct parser *parser, json_t *value, const char *path,
	   struct config_port *port)
{
	if (!check_object(parser, value, path, port_keys))
		return;
	port->present = true;
	member_string(parser, value, path, "device", true, port->device,
		      sizeof port->device);
	parse_port_address(parser, value, path, port);
	parse_port_gateway(parser, value, path, port);
}

/*
 * Two ports on one device or on overlapping prefixes would make the
 * dataplane's choice of egress port ambiguous.
 */
static void
check_port_pair(struct parser *parser, const char *path)
{
	const struct config_dataplane *dataplane = &parser->config->dataplane;
	const struct config_port *public = &dataplane->public_port;
	const struct config_port *private = &dataplane->private_port;
	char child[PATH_SIZE], text[16];
	uint32_t mask;

	if (!public->present || !private->present)
		return;
	if (public->device[0] != '\0' && strcmp(public->device, private->device) == 0) {
		format_into(child, sizeof child, "%s.private.device", path);
		report(parser, child, "the public port uses the same device");
	}
	if (public->address == 0 || private->address == 0)
		return;
	mask = prefix_mask(public->prefix_length < private->prefix_length ?
			   public->prefix_length : private->prefix_length);
	if ((public->address & mask) == (private->address & mask)) {
		format_into(child, sizeof child, "%s.private.address", path);
		report(parser, child, "overlaps the public port's prefix %s/%u",
		       config_format_ipv4(public->address & prefix_mask(public->prefix_length), text),
		       public->prefix_length);
	}
}

static void
parse_ports(struct parser *parser, json_t *value, const char *path)
{
	struct config_dataplane *dataplane = &parser->config->dataplane;
	char child[PATH_SIZE];
	json_t *port;

	if (!check_object(parser, value, path, ports_keys))
		return;
	if ((port = member(parser, value, path, "public", true, child)) != NULL)
		parse_port(parser, port, child, &dataplane->public_port);
	/* No private port: one-arm mode, backends are reached by the public one. */
	if ((port = member(parser, value, path, "private", false, child)) != NULL)
		parse_port(parser, port, child, &dataplane->private_port);
	check_port_pair(parser, path);
}

static void
parse_flows(struct parser *parser, json_t *value, const char *path)
{
	struct config_dataplane *dataplane = &parser->config->dataplane;

	if (!check_object(parser, value, path, flows_keys))
		return;
	member_integer(parser, value, path, "capacity", false, CAPACITY_MIN,
		       CAPACITY_MAX, &dataplane->flow_capacity);
	member_integer(parser, value, path, "tcp_syn_timeout_s", false, TIMEOUT_S_MIN,
		       TIMEOUT_S_MAX, &dataplane->tcp_syn_timeout_s);
	member_integer(parser, value, path, "tcp_established_timeout_s", false,
		       TIMEOUT_S_MIN, TIMEOUT_S_MAX, &dataplane->tcp_established_timeout_s);
	member_integer(parser, value, path, "tcp_fin_timeout_s", false, TIMEOUT_S_MIN,
		       TIMEOUT_S_MAX, &dataplane->tcp_fin_timeout_s);
	member_integer(parser, value, path, "tcp_close_timeout_s", false, TIMEOUT_S_MIN,
		       TIMEOUT_S_MAX, &dataplane->tcp_close_timeout_s);
	member_integer(parser, value, path, "udp_timeout_s", false, TIMEOUT_S_MIN,
		       TIMEOUT_S_MAX, &dataplane->udp_timeout_s);
}

static void
parse_sessions(struct parser *parser, json_t *value, const char *path)
{
	if (!check_object(parser, value, path, sessions_keys))
		return;
	member_integer(parser, value, path, "capacity", false, CAPACITY_MIN,
		       CAPACITY_MAX, &parser->config->dataplane.session_capacity);
}

static void
parse_binding(struct parser *parser, json_t *value, const char *path)
{
	struct config_dataplane *dataplane = &parser->config->dataplane;

	if (!check_object(parser, value, path, binding_keys))
		return;
	member_integer(parser, value, path, "capacity", false, 16, 65535,
		       &dataplane->binding_capacity);
	member_integer(parser, value, path, "inspect_timeout_ms", false, 100, 60000,
		       &dataplane->inspect_timeout_ms);
}

/* The overload ladder (docs/reliability.md): cookies before refusal. */
static void
parse_overload(struct parser *parser, json_t *value, const char *path)
{
	struct config_dataplane *dataplane = &parser->config->dataplane;
	char child[PATH_SIZE];

	if (!check_object(parser, value, path, overload_keys))
		return;
	member_integer(parser, value, path, "half_open", false, 1, CAPACITY_MAX,
		       &dataplane->overload_half_open);
	unsigned errors = parser->errors->count;
	member_integer(parser, value, path, "syn_cookie_percent", false, 1, 100,
		       &dataplane->overload_cookie_percent);
	member_integer(parser, value, path, "refuse_percent", false, 1, 100,
		       &dataplane->overload_refuse_percent);
	/* compared only when both are good; named where the user wrote one */
	if (parser->errors->count != errors ||
	    dataplane->overload_cookie_percent <= dataplane->overload_refuse_percent)
		return;
	bool cookie_given = json_object_get(value, "syn_cookie_percent") != NULL;
	format_into(child, sizeof child, "%s.%s", path,
		    cookie_given ? "syn_cookie_percent" : "refuse_percent");
	report(parser, child, "syn_cookie_percent %u%s is above refuse_percent %u: cookies are the "
	       "first step", dataplane->overload_cookie_percent, cookie_given ? "" : " (the default)",
	       dataplane->overload_refuse_percent);
}

static bool
is_prime(uint32_t n)
{
	if (n < 2)
		return false;
	for (uint32_t d = 2; d <= n / d; d++)
		if (n % d == 0)
			return false;
	return true;
}

/* Maglev's lookup table size must be prime for its permutations to cover it. */
static void
parse_maglev(struct parser *parser, json_t *value, const char *path)
{
	char child[PATH_SIZE];
	uint32_t size;

	if (!check_object(parser, value, path, maglev_keys))
		return;
	if (member_integer(parser, value, path, "table_size", false, MAGLEV_SIZE_MIN,
			   MAGLEV_SIZE_MAX, &size) != FIELD_OK)
		return;
	if (!is_prime(size)) {
		path_member(child, path, "table_size");
		report(parser, child, "%u is not prime (try 65537 or 131071)", size);
		return;
	}
	parser->config->dataplane.maglev_table_size = size;
}

static void
parse_workers(struct parser *parser, const json_t *object, const char *parent)
{
	char path[PATH_SIZE];
	uint32_t workers;

	if (member_integer(parser, object, parent, "workers", false, 1, 1024,
			   &workers) != FIELD_OK)
		return;
	if (workers > CONFIG_WORKERS_MAX) {
		path_member(path, parent, "workers");
		report(parser, path, "%u workers requested: at most %d are supported",
		       workers, CONFIG_WORKERS_MAX);
		return;
	}
	parser->config->dataplane.workers = workers;
}

/* Several workers steer a connection by its client address, which is the
 * source on the public port and the destination on the private one: that
 * needs the two sides on two devices (steer.h). */
static void
check_workers_ports(struct parser *parser, const char *parent)
{
	const struct config_dataplane *dataplane = &parser->config->dataplane;
	char path[PATH_SIZE];

	if (dataplane->workers <= 1)
		return;
	if (dataplane->private_port.present &&
	    strcmp(dataplane->private_port.device, dataplane->public_port.device) != 0)
		return;
	path_member(path, parent, "workers");
	report(parser, path, "%u workers need a private port on its own device: "
	       "one-arm mode runs one worker", dataplane->workers);
}

static void
parse_dataplane(struct parser *parser, json_t *value, const char *path)
{
	char child[PATH_SIZE];
	json_t *section;

	if (!check_object(parser, value, path, dataplane_keys))
		return;
	parse_workers(parser, value, path);
	if ((section = member(parser, value, path, "ports", true, child)) != NULL)
		parse_ports(parser, section, child);
	if ((section = member(parser, value, path, "flows", false, child)) != NULL)
		parse_flows(parser, section, child);
	if ((section = member(parser, value, path, "sessions", false, child)) != NULL)
		parse_sessions(parser, section, child);
	if ((section = member(parser, value, path, "binding", false, child)) != NULL)
		parse_binding(parser, section, child);
	if ((section = member(parser, value, path, "overload", false, child)) != NULL)
		parse_overload(parser, section, child);
	member_integer(parser, value, path, "idle_sleep_us", false, 0, 10000,
		       &parser->config->dataplane.idle_sleep_us);
	if ((section = member(parser, value, path, "maglev", false, child)) != NULL)
		parse_maglev(parser, section, child);
	check_workers_ports(parser, path);
}

/* ------------------------------------------------------------------------ */
/* control                                                                   */

/* "host:port" where host is a dotted quad (0.0.0.0 = every address). */
static bool
metrics_is_valid(const char *text)
{
	const char *colon = strrchr(text, ':');
	char host[16];
	uint32_t address, port = 0;

	if (colon == NULL || (size_t)(colon - text) >= sizeof host)
		return false;
	memcpy(host, text, (size_t)(colon - text));
	host[colon - text] = '\0';
	if (config_parse_ipv4(host, &address) != 0)
		return false;
	if (colon[1] < '1' || colon[1] > '9')
		return false;
	for (const char *c = colon + 1; *c != '\0'; c++) {
		if (*c < '0' || *c > '9' || c - colon > 5)
			return false;
		port = port * 10 + (uint32_t)(*c - '0');
	}
	return port <= PORT_MAX;
}

static void
parse_control(struct parser *parser, json_t *value, const char *path)
{
	struct config_control *control = &parser->config->control;
	char child[PATH_SIZE], text[CONFIG_PATH_MAX], quoted[QUOTE_MAX + 4];

	if (!check_object(parser, value, path, control_keys))
		return;
	if (member_string(parser, value, path, "socket", false, text,
			  sizeof text) == FIELD_OK) {
		if (strlen(text) <= SOCKET_PATH_MAX) {
			memcpy(control->socket, text, sizeof text);
		} else {
			path_member(child, path, "socket");
			report(parser, child, "longer than %zu characters, the limit of "
			       "a Unix socket path", SOCKET_PATH_MAX);
		}
	}
	if (member_string(parser, value, path, "metrics", false, text,
			  sizeof text) != FIELD_OK)
		return;
	if (!metrics_is_valid(text)) {
		path_member(child, path, "metrics");
		report(parser, child, "'%s' is not an IPv4 address and port (a.b.c.d:port)",
		       quote(text, quoted));
		return;
	}
	memcpy(control->metrics, text, sizeof text);
}

/* ------------------------------------------------------------------------ */
/* pools                                                                     */

/* A DNS name: dot-separated labels of letters, digits and inner hyphens. */
static bool
fqdn_is_valid(const char *name)
{
	size_t label = 0;

	if (strlen(name) > 253)
		return false;
	for (const char *c = name;; c++) {
		if (*c == '.' || *c == '\0') {
			if (label == 0 || label > 63 || c[-1] == '-')
				return false;
			if (*c == '\0')
				return true;
			label = 0;
			continue;
		}
		if (!is_alphanumeric(*c) && !(*c == '-' && label > 0))
			return false;
		label++;
	}
}

static void
parse_backend(struct parser *parser, json_t *value, const char *path,
	      struct config_backend *backend)
{
	char child[PATH_SIZE], quoted[QUOTE_MAX + 4];
	uint32_t weight;

	backend->weight = 1;
	backend->enabled = true;
	if (!check_object(parser, value, path, backend_keys))
		return;
	member_name(parser, value, path, "name", backend->name);
	member_address(parser, value, path, "address", true, &backend->address);
	member_port(parser, value, path, "port", false, &backend->port);
	if (member_integer(parser, value, path, "weight", false, 0, WEIGHT_MAX,
			   &weight) == FIELD_OK)
		backend->weight = (uint16_t)weight;
	member_boolean(parser, value, path, "enabled", &backend->enabled);
	if (member_string(parser, value, path, "fqdn", false, backend->fqdn,
			  sizeof backend->fqdn) == FIELD_OK && !fqdn_is_valid(backend->fqdn)) {
		path_member(child, path, "fqdn");
		report(parser, child, "'%s' is not a DNS name", quote(backend->fqdn, quoted));
		backend->fqdn[0] = '\0';
	}
}

/* Within a pool, names identify backends (Maglev seeds on them) and one
 * address:port listed twice would silently double its share. */
static void
check_backends(struct parser *parser, const struct config_pool *pool, const char *path)
{
	for (unsigned i = 1; i < pool->backend_count; i++) {
		const struct config_backend *later = &pool->backends[i];
		char child[PATH_SIZE];

		for (unsigned j = 0; j < i; j++) {
			const struct config_backend *earlier = &pool->backends[j];

			if (later->name[0] != '\0' && strcmp(later->name, earlier->name) == 0) {
				format_into(child, sizeof child, "%s[%u].name", path, i);
				report(parser, child, "duplicate backend name '%s' "
				       "(also %s[%u])", later->name, path, j);
			}
			if (later->address != 0 && later->address == earlier->address &&
			    later->port == earlier->port) {
				format_into(child, sizeof child, "%s[%u].address", path, i);
				report(parser, child, "same address and port as backend "
				       "'%s' (%s[%u])", earlier->name, path, j);
			}
		}
	}
}

static void
parse_backends(struct parser *parser, json_t *value, const char *path,
	       struct config_pool *pool)
{
	size_t count;

	if (!json_is_array(value)) {
		report(parser, path, "expected an array, got %s", json_kind(value));
		return;
	}
	count = json_array_size(value);
	if (count == 0) {
		report(parser, path, "a pool needs at least one backend");
		return;
	}
	if (count > CONFIG_BACKENDS_MAX) {
		report(parser, path, "%zu backends, at most %d per pool", count,
		       CONFIG_BACKENDS_MAX);
		count = CONFIG_BACKENDS_MAX;
	}
	pool->backends = calloc(count, sizeof *pool->backends);
	if (pool->backends == NULL) {
		report(parser, path, "out of memory");
		return;
	}
	pool->backend_count = (unsigned)count;
	for (size_t i = 0; i < count; i++) {
		char child[PATH_SIZE];

		path_index(child, path, i);
		parse_backend(parser, json_array_get(value, i), child, &pool->backends[i]);
	}
	check_backends(parser, pool, path);
}

/* Members that only one kind of check reads are refused on the others, so
 * "type": "tcp" with a "path" is caught rather than silently ignored. */
static void
check_health_members(struct parser *parser, const json_t *value, const char *path,
		     const struct config_health *health)
{
	bool tls = health->type == CONFIG_HEALTH_TLS || health->type == CONFIG_HEALTH_HTTPS;
	bool http = health->type == CONFIG_HEALTH_HTTP || health->type == CONFIG_HEALTH_HTTPS;
	const char *type = health_names[health->type];
	char child[PATH_SIZE];

	if (!tls && json_object_get(value, "ca") != NULL) {
		path_member(child, path, "ca");
		report(parser, child, "'ca' is only used by tls and https checks, not %s", type);
	}
	for (unsigned i = 0; i < 2; i++) {
		const char *key = i == 0 ? "path" : "expect_status";

		if (!http && json_object_get(value, key) != NULL) {
			path_member(child, path, key);
			report(parser, child, "'%s' is only used by http and https "
			       "checks, not %s", key, type);
		}
	}
}

/* "path": the request target of an HTTP check; it goes on the request line
 * verbatim, so it must be absolute and free of spaces and control bytes. */
static void
parse_health_path(struct parser *parser, const json_t *value, const char *parent,
		  struct config_health *health)
{
	char text[CONFIG_HTTP_PATH_MAX], child[PATH_SIZE], quoted[QUOTE_MAX + 4];
	bool printable = true;

	if (member_string(parser, value, parent, "path", false, text, sizeof text) != FIELD_OK)
		return;
	for (const char *c = text; *c != '\0'; c++)
		printable = printable && *c > 0x20 && *c < 0x7f;
	if (text[0] != '/' || !printable) {
		path_member(child, parent, "path");
		report(parser, child, "'%s' must start with '/' and hold no spaces "
		       "or control characters", quote(text, quoted));
		return;
	}
	memcpy(health->path, text, sizeof text);
}

static void
parse_health(struct parser *parser, json_t *value, const char *path,
	     struct config_health *health)
{
	char child[PATH_SIZE];
	unsigned type;
	uint32_t status;
	enum field type_result, timeout;

	if (!check_object(parser, value, path, health_keys))
		return;
	type_result = member_choice(parser, value, path, "type", false, health_names, &type);
	if (type_result == FIELD_OK)
		health->type = (enum config_health_type)type;
	member_port(parser, value, path, "port", false, &health->port);
	member_integer(parser, value, path, "interval_ms", false,
		       HEALTH_INTERVAL_MS_MIN, HEALTH_MS_MAX, &health->interval_ms);
	timeout = member_integer(parser, value, path, "timeout_ms", false, 1,
				 HEALTH_MS_MAX, &health->timeout_ms);
	member_integer(parser, value, path, "rise", false, 1, HEALTH_COUNT_MAX, &health->rise);
	member_integer(parser, value, path, "fall", false, 1, HEALTH_COUNT_MAX, &health->fall);
	member_string(parser, value, path, "ca", false, health->ca, sizeof health->ca);
	parse_health_path(parser, value, path, health);
	if (member_integer(parser, value, path, "expect_status", false, 100, 599,
			   &status) == FIELD_OK)
		health->expect_status = (uint16_t)status;
	/* With a bad type, which members belong is unknown: say nothing more. */
	if (type_result != FIELD_INVALID)
		check_health_members(parser, value, path, health);
	/* A check that may outlive its interval would overlap the next one. */
	if (health->timeout_ms >= health->interval_ms) {
		path_member(child, path, timeout == FIELD_OK ? "timeout_ms" : "interval_ms");
		report(parser, child, "timeout_ms (%u) must be less than interval_ms (%u)",
		       health->timeout_ms, health->interval_ms);
	}
}

static void
parse_pool(struct parser *parser, json_t *value, const char *path,
	   struct config_pool *pool)
{
	char child[PATH_SIZE];
	json_t *section;

	pool->health = (struct config_health){
		.type = CONFIG_HEALTH_NONE, .interval_ms = 1000, .timeout_ms = 500,
		.rise = 2, .fall = 3, .path = "/", .expect_status = 200,
	};
	if (!check_object(parser, value, path, pool_keys))
		return;
	if ((section = member(parser, value, path, "backends", true, child)) != NULL)
		parse_backends(parser, section, child, pool);
	if ((section = member(parser, value, path, "health", false, child)) != NULL)
		parse_health(parser, section, child, &pool->health);
}

/* "pools": an object whose keys are the pool names, in document order. */
static void
parse_pools(struct parser *parser, json_t *value, const char *path)
{
	struct config *config = parser->config;
	size_t count;
	const char *name;
	json_t *pool;

	if (!json_is_object(value)) {
		report(parser, path, "expected an object, got %s", json_kind(value));
		return;
	}
	count = json_object_size(value);
	if (count == 0) {
		report(parser, path, "at least one pool is required");
		return;
	}
	parser->pools_known = true;
	if (count > CONFIG_POOLS_MAX) {
		report(parser, path, "%zu pools, at most %d", count, CONFIG_POOLS_MAX);
		count = CONFIG_POOLS_MAX;
	}
	config->pools = calloc(count, sizeof *config->pools);
	if (config->pools == NULL) {
		report(parser, path, "out of memory");
		return;
	}
	json_object_foreach(value, name, pool) {
		struct config_pool *entry = &config->pools[config->pool_count];
		char child[PATH_SIZE];

		if (config->pool_count == count)
			break;
		config->pool_count++;
		path_member(child, path, name);
		if (name_is_valid(name))
			memcpy(entry->name, name, strlen(name) + 1);
		else
			report_bad_name(parser, child, name);
		parse_pool(parser, pool, child, entry);
	}
}

/* ------------------------------------------------------------------------ */
/* services                                                                  */

/*
 * Which members make sense depends on the mode: a fallback only exists for
 * ssl-session, and mode none keeps no table to time out or aggregate.
 * Refusing the others catches a mode typed wrong more than it annoys.
 */
static void
check_persistence_members(struct parser *parser, const json_t *value,
			  const char *path, const struct config_persistence *persistence)
{
	const char *mode = persistence_names[persistence->mode];
	char child[PATH_SIZE];

	if (persistence->mode != CONFIG_PERSIST_SSL_SESSION &&
	    json_object_get(value, "fallback") != NULL) {
		path_member(child, path, "fallback");
		report(parser, child, "a fallback only applies to mode ssl-session, not %s",
		       mode);
	}
	if (persistence->mode != CONFIG_PERSIST_NONE)
		return;
	for (unsigned i = 0; i < 2; i++) {
		const char *key = i == 0 ? "timeout_s" : "source_prefix";

		if (json_object_get(value, key) != NULL) {
			path_member(child, path, key);
			report(parser, child, "'%s' has no effect with mode none", key);
		}
	}
}

static void
parse_persistence(struct parser *parser, json_t *value, const char *path,
		  struct config_persistence *persistence)
{
	unsigned choice;
	uint32_t length;

	if (!check_object(parser, value, path, persistence_keys))
		return;
	if (member_choice(parser, value, path, "mode", true, persistence_names,
			  &choice) != FIELD_OK)
		return;         /* the other members' meaning depends on the mode */
	persistence->mode = (enum config_persistence_mode)choice;
	if (member_choice(parser, value, path, "fallback", false, fallback_names,
			  &choice) == FIELD_OK)
		persistence->fallback = (enum config_fallback)choice;
	member_integer(parser, value, path, "timeout_s", false, TIMEOUT_S_MIN,
		       TIMEOUT_S_MAX, &persistence->timeout_s);
	if (member_integer(parser, value, path, "source_prefix", false,
			   SOURCE_PREFIX_MIN, 32, &length) == FIELD_OK)
		persistence->source_prefix_length = (uint8_t)length;
	check_persistence_members(parser, value, path, persistence);
}

/* "allow_from": source prefixes allowed to reach the service. */
static void
parse_allow_from(struct parser *parser, json_t *value, const char *path,
		 struct config_service *service)
{
	size_t count;

	if (!json_is_array(value)) {
		report(parser, path, "expected an array, got %s", json_kind(value));
		return;
	}
	count = json_array_size(value);
	if (count == 0) {
		/* allow_count 0 means "everyone": an empty list must not say that. */
		report(parser, path, "an empty list would allow everyone; omit the key "
		       "or list prefixes");
		return;
	}
	if (count > CONFIG_ALLOW_MAX) {
		report(parser, path, "%zu prefixes, at most %d", count, CONFIG_ALLOW_MAX);
		count = CONFIG_ALLOW_MAX;
	}
	for (size_t i = 0; i < count; i++) {
		const json_t *entry = json_array_get(value, i);
		char child[PATH_SIZE], quoted[QUOTE_MAX + 4];
		uint32_t address;
		uint8_t length;

		path_index(child, path, i);
		if (!json_is_string(entry)) {
			report(parser, child, "expected a string, got %s", json_kind(entry));
			continue;
		}
		quote(json_string_value(entry), quoted);
		if (parse_address_and_length(json_string_value(entry), true, &address,
					     &length) != 0) {
			report(parser, child, "'%s' is not a prefix (a.b.c.d/len, len "
			       "0..32)", quoted);
		} else if ((address & ~prefix_mask(length)) != 0) {
			report(parser, child, "%s has host bits set", quoted);
		} else {
			service->allow_from[service->allow_count++] =
				(struct config_prefix){ .address = address, .length = length };
		}
	}
}

/* "pool": the name of a pool, resolved to its index. */
static void
parse_service_pool(struct parser *parser, const json_t *object, const char *parent,
		   struct config_service *service)
{
	char path[PATH_SIZE], name[CONFIG_NAME_MAX], quoted[QUOTE_MAX + 4];
	json_t *value = member(parser, object, parent, "pool", true, path);
	int index;

	if (value == NULL || !read_name(parser, value, path, name))
		return;
	index = config_pool_index(parser->config, name);
	if (index >= 0)
		service->pool = (unsigned)index;
	else if (parser->pools_known)
		report(parser, path, "no pool named '%s'", quote(name, quoted));
}

/* SYN cookies are a TCP matter, and delayed binding cannot do without them. */
static void
parse_syn_cookies(struct parser *parser, json_t *value, const char *path,
		  struct config_service *service)
{
	char child[PATH_SIZE];
	unsigned choice;

	service->syn_cookies = service->persistence.mode == CONFIG_PERSIST_SSL_SESSION ?
			       CONFIG_SYN_COOKIES_ALWAYS : CONFIG_SYN_COOKIES_AUTO;
	if (member_choice(parser, value, path, "syn_cookies", false, syn_cookies_names,
			  &choice) != FIELD_OK)
		return;
	format_into(child, sizeof child, "%s.syn_cookies", path);
	if (service->protocol == CONFIG_PROTO_UDP) {
		report(parser, child, "SYN cookies apply to protocol tcp only");
		return;
	}
	if (service->persistence.mode == CONFIG_PERSIST_SSL_SESSION &&
	    choice != CONFIG_SYN_COOKIES_ALWAYS) {
		report(parser, child, "an ssl-session service always answers SYNs with cookies "
		       "(delayed binding); only \"always\" may be given");
		return;
	}
	service->syn_cookies = (enum config_syn_cookies)choice;
}

static void
parse_service(struct parser *parser, json_t *value, const char *path,
	      struct config_service *service)
{
	char child[PATH_SIZE];
	unsigned protocol;
	json_t *section;

	service->persistence = (struct config_persistence){
		.mode = CONFIG_PERSIST_NONE, .fallback = CONFIG_FALLBACK_SOURCE_IP,
		.timeout_s = 3600, .source_prefix_length = 32,
	};
	if (!check_object(parser, value, path, service_keys))
		return;
	member_name(parser, value, path, "name", service->name);
	member_address(parser, value, path, "vip", true, &service->vip);
	member_port(parser, value, path, "port", true, &service->port);
	if (member_choice(parser, value, path, "protocol", false, protocol_names,
			  &protocol) == FIELD_OK)
		service->protocol = (enum config_protocol)protocol;
	parse_service_pool(parser, value, path, service);
	member_port(parser, value, path, "target_port", false, &service->target_port);
	if ((section = member(parser, value, path, "persistence", false, child)) != NULL)
		parse_persistence(parser, section, child, &service->persistence);
	if ((section = member(parser, value, path, "allow_from", false, child)) != NULL)
		parse_allow_from(parser, section, child, service);
	/* Delayed binding reads a TLS ClientHello out of a TCP stream. */
	if (service->persistence.mode == CONFIG_PERSIST_SSL_SESSION &&
	    service->protocol == CONFIG_PROTO_UDP) {
		format_into(child, sizeof child, "%s.persistence.mode", path);
		report(parser, child, "ssl-session persistence needs protocol tcp");
	}
	parse_syn_cookies(parser, value, path, service);
}

/* A VIP the dataplane also answers ARP for as its own port address would
 * make it take the service's packets for its own. */
static void
check_vip(struct parser *parser, const struct config_service *service,
	  const char *path)
{
	const struct config_dataplane *dataplane = &parser->config->dataplane;
	char child[PATH_SIZE], text[16];

	if (service->vip == 0)
		return;
	if (service->vip == dataplane->public_port.address ||
	    service->vip == dataplane->private_port.address) {
		format_into(child, sizeof child, "%s.vip", path);
		report(parser, child, "%s is the address of a dataplane port",
		       config_format_ipv4(service->vip, text));
	}
}

/* Names identify services to operators, and one VIP:port/protocol can only
 * lead to one pool; the later of two is reported, naming the earlier. */
static void
check_services(struct parser *parser, const char *path)
{
	const struct config *config = parser->config;

	for (unsigned i = 0; i < config->service_count; i++) {
		const struct config_service *later = &config->services[i];
		char child[PATH_SIZE], text[16];

		path_index(child, path, i);
		check_vip(parser, later, child);
		for (unsigned j = 0; j < i; j++) {
			const struct config_service *earlier = &config->services[j];
			char field[PATH_SIZE];

			if (later->name[0] != '\0' && strcmp(later->name, earlier->name) == 0) {
				format_into(field, sizeof field, "%s.name", child);
				report(parser, field, "duplicate service name '%s' (also "
				       "%s[%u])", later->name, path, j);
			}
			if (later->vip != 0 && later->port != 0 && later->vip == earlier->vip &&
			    later->port == earlier->port && later->protocol == earlier->protocol) {
				format_into(field, sizeof field, "%s.vip", child);
				report(parser, field, "%s:%u/%s is already served by '%s' "
				       "(%s[%u])", config_format_ipv4(later->vip, text),
				       later->port, protocol_names[later->protocol],
				       earlier->name, path, j);
			}
		}
	}
}

static void
parse_services(struct parser *parser, json_t *value, const char *path)
{
	struct config *config = parser->config;
	size_t count;

	if (!json_is_array(value)) {
		report(parser, path, "expected an array, got %s", json_kind(value));
		return;
	}
	count = json_array_size(value);
	if (count == 0) {
		report(parser, path, "at least one service is required");
		return;
	}
	if (count > CONFIG_SERVICES_MAX) {
		report(parser, path, "%zu services, at most %d", count, CONFIG_SERVICES_MAX);
		count = CONFIG_SERVICES_MAX;
	}
	config->services = calloc(count, sizeof *config->services);
	if (config->services == NULL) {
		report(parser, path, "out of memory");
		return;
	}
	config->service_count = (unsigned)count;
	for (size_t i = 0; i < count; i++) {
		char child[PATH_SIZE];

		path_index(child, path, i);
		parse_service(parser, json_array_get(value, i), child, &config->services[i]);
	}
	check_services(parser, path);
}

/* ------------------------------------------------------------------------ */
/* The document                                                              */

/* Maglev fills its table with every backend's preferences; a table smaller
 * than a pool cannot give each backend a slot. */
static void
check_maglev_size(struct parser *parser)
{
	const struct config *config = parser->config;
	uint32_t size = config->dataplane.maglev_table_size;

	for (unsigned i = 0; i < config->pool_count; i++) {
		if (config->pools[i].backend_count > size) {
			report(parser, "$.dataplane.maglev.table_size", "%u is smaller than "
			       "pool '%s' (%u backends)", size, config->pools[i].name,
			       config->pools[i].backend_count);
			return;
		}
	}
}

static void
set_defaults(struct config *config)
{
	config->dataplane = (struct config_dataplane){
		.workers = 1,
		.flow_capacity = 65536,
		.tcp_syn_timeout_s = 30,
		.tcp_established_timeout_s = 900,
		.tcp_fin_timeout_s = 60,
		.tcp_close_timeout_s = 10,
		.udp_timeout_s = 300,
		.session_capacity = 65536,
		.maglev_table_size = 65537,
		.binding_capacity = 1024,
		.inspect_timeout_ms = 3000,
		.overload_half_open = 1024,
		.overload_cookie_percent = 75,
		.overload_refuse_percent = 95,
	};
	config->control = (struct config_control){
		.socket = "/run/tether/control.sock",
		.metrics = "127.0.0.1:9469",
	};
}

/* Pools come before services so that services can name them. */
static void
parse_document(struct parser *parser, json_t *root)
{
	char path[PATH_SIZE];
	json_t *section;

	set_defaults(parser->config);
	if (!check_object(parser, root, "$", top_keys))
		return;
	if ((section = member(parser, root, "$", "dataplane", true, path)) != NULL)
		parse_dataplane(parser, section, path);
	if ((section = member(parser, root, "$", "control", false, path)) != NULL)
		parse_control(parser, section, path);
	if ((section = member(parser, root, "$", "pools", true, path)) != NULL)
		parse_pools(parser, section, path);
	if ((section = member(parser, root, "$", "services", true, path)) != NULL)
		parse_services(parser, section, path);
	check_maglev_size(parser);
}

static bool
is_blank(const char *text, size_t length)
{
	for (size_t i = 0; i < length; i++)
		if (text[i] != ' ' && text[i] != '\t' && text[i] != '\n' && text[i] != '\r')
			return false;
	return true;
}

int
config_parse(const char *text, size_t length, struct config *out,
	     struct config_errors *errors)
{
	struct config_errors scratch;
	struct config config = { 0 };
	struct parser parser = {
		.config = &config,
		.errors = errors != NULL ? errors : &scratch,
	};
	json_error_t json_error;
	json_t *root;

	parser.errors->count = 0;
	memset(out, 0, sizeof *out);
	if (text == NULL || is_blank(text, length)) {
		report(&parser, "$", "the document is empty");
		return -EINVAL;
	}
	root = json_loadb(text, length, JSON_REJECT_DUPLICATES, &json_error);
	if (root == NULL) {
		if (json_error.line > 0)
			report(&parser, "$", "line %d, column %d: %s", json_error.line,
			       json_error.column, json_error.text);
		else
			report(&parser, "$", "%s", json_error.text);
		return -EINVAL;
	}
	parse_document(&parser, root);
	json_decref(root);
	if (parser.errors->count > 0) {
		config_free(&config);
		return -EINVAL;
	}
	*out = config;
	return 0;
}

/* Report a file problem at "$", naming the file. */
static int
file_error(struct config_errors *errors, const char *file, const char *problem)
{
	struct parser parser = { .errors = errors };
	char quoted[QUOTE_MAX + 4];

	errors->count = 0;
	report(&parser, "$", "%s: %s", quote(file, quoted), problem);
	return -EINVAL;
}

/*
 * Read all of `file` into a malloc'ed buffer, refusing more than
 * FILE_SIZE_MAX bytes.  Returns 0, or a positive errno (EFBIG when larger).
 */
static int
read_file(const char *file, char **text, size_t *length)
{
	FILE *stream = fopen(file, "rb");
	size_t capacity = 0, used = 0;
	char *buffer = NULL;
	int error = 0;

	if (stream == NULL)
		return errno;
	while (error == 0) {
		size_t n;

		if (used == capacity) {
			/* Grow 64 KiB, 128 KiB, ... up to one byte past the cap. */
			size_t wanted = capacity == 0 ? 65536 : 2 * capacity;
			char *grown;

			if (capacity > FILE_SIZE_MAX) {
				error = EFBIG;
				break;
			}
			if (wanted > FILE_SIZE_MAX + 1)
				wanted = FILE_SIZE_MAX + 1;
			if ((grown = realloc(buffer, wanted)) == NULL) {
				error = ENOMEM;
				break;
			}
			buffer = grown;
			capacity = wanted;
		}
		errno = 0;
		n = fread(buffer + used, 1, capacity - used, stream);
		used += n;
		if (n == 0 && ferror(stream))
			error = errno != 0 ? errno : EIO;
		else if (n == 0)
			break;
	}
	fclose(stream);
	if (error != 0) {
		free(buffer);
		return error;
	}
	*text = buffer;
	*length = used;
	return 0;
}

int
config_load_file(const char *file, struct config *out, struct config_errors *errors)
{
	struct config_errors scratch;
	char *text = NULL;
	size_t length = 0;
	int error, result;

	if (errors == NULL)
		errors = &scratch;
	memset(out, 0, sizeof *out);
	error = read_file(file, &text, &length);
	if (error == EFBIG)
		return file_error(errors, file, "larger than 4 MiB, refused");
	if (error != 0)
		return file_error(errors, file, strerror(error));
	result = config_parse(text, length, out, errors);
	free(text);
	return result;
}

void
config_free(struct config *config)
{
	if (config == NULL)
		return;
	for (unsigned i = 0; i < config->pool_count; i++)
		free(config->pools[i].backends);
	free(config->pools);
	free(config->services);
	memset(config, 0, sizeof *config);
}

int
config_pool_index(const struct config *config, const char *name)
{
	if (config == NULL || name == NULL)
		return -1;
	for (unsigned i = 0; i < config->pool_count; i++)
		if (config->pools[i].name[0] != '\0' && strcmp(config->pools[i].name, name) == 0)
			return (int)i;
	return -1;
}

const char *
config_persistence_mode_name(enum config_persistence_mode mode)
{
	if ((unsigned)mode >= sizeof persistence_names / sizeof persistence_names[0] - 1)
		return "unknown";
	return persistence_names[mode];
}

void
config_print_errors(FILE *out, const char *file, const struct config_errors *errors)
{
	unsigned shown = errors->count < CONFIG_ERRORS_MAX ? errors->count : CONFIG_ERRORS_MAX;

	for (unsigned i = 0; i < shown; i++)
		fprintf(out, "%s: %s: %s\n", file, errors->errors[i].path, errors->errors[i].message);
	if (errors->count > shown)
		fprintf(out, "%s: ... and %u more errors\n", file, errors->count - shown);
}
