/*
 * check_tcp.c: the TCP part of every check (relayd's check_tcp.c).
 *
 * A tcp check is a non-blocking connect that succeeds when the socket turns
 * writable with SO_ERROR 0: the backend's kernel completed the handshake,
 * which says the port is open and the accept queue not full, nothing more.
 * The tls and http checks start the same way and continue on the socket.
 *
 * Sockets are close-on-exec and non-blocking from birth (SOCK_CLOEXEC |
 * SOCK_NONBLOCK), so no path leaves one blocking the engine.  A source
 * address, when set, is bound with IP_BIND_ADDRESS_NO_PORT so that the
 * kernel picks the port at connect time with the full 4-tuple in view.
 */
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "check.h"

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

static struct sockaddr_in
check_tcp_sockaddr(uint32_t address, uint16_t port)
{
	struct sockaddr_in sin;

	memset(&sin, 0, sizeof sin);
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(address);
	sin.sin_port = htons(port);
	return sin;
}

enum check_step
check_tcp_open(struct health_backend *backend, uint32_t source)
{
	struct sockaddr_in sin;
	char text[16];
	int one = 1;

	backend->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (backend->fd < 0) {
		snprintf(backend->error, sizeof backend->error, "socket: %s", strerror(errno));
		return CHECK_STEP_FAILED;
	}
	if (source != 0) {
		(void)setsockopt(backend->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
		sin = check_tcp_sockaddr(source, 0);
		if (bind(backend->fd, (struct sockaddr *)&sin, sizeof sin) < 0) {
			snprintf(backend->error, sizeof backend->error, "bind %s: %s",
				 config_format_ipv4(source, text), strerror(errno));
			return CHECK_STEP_FAILED;
		}
	}
	sin = check_tcp_sockaddr(backend->address, backend->port);
	if (connect(backend->fd, (struct sockaddr *)&sin, sizeof sin) == 0)
		return CHECK_STEP_DONE;
	if (errno == EINPROGRESS)
		return CHECK_STEP_WANT_WRITE;
	snprintf(backend->error, sizeof backend->error, "connect: %s", strerror(errno));
	return CHECK_STEP_FAILED;
}

enum check_step
check_tcp_connected(struct health_backend *backend)
{
	int error = 0;
	socklen_t length = sizeof error;

	if (getsockopt(backend->fd, SOL_SOCKET, SO_ERROR, &error, &length) < 0)
		error = errno;
	if (error == EINPROGRESS)
		return CHECK_STEP_WANT_WRITE;   /* a spurious wake-up */
	if (error != 0) {
		snprintf(backend->error, sizeof backend->error, "connect: %s", strerror(error));
		return CHECK_STEP_FAILED;
	}
	return CHECK_STEP_DONE;
}

void
check_tcp_close(struct health_backend *backend)
{
	char discard[4096];
	int rounds;

	if (backend->fd < 0)
		return;
	/* Unread data at close() makes the kernel send a reset; what the peer sent
	 * (a second TLS ticket, the rest of an HTTP response) is drained first, a
	 * few reads at most, never waiting. */
	for (rounds = 0; rounds < 4; rounds++)
		if (recv(backend->fd, discard, sizeof discard, MSG_DONTWAIT) <= 0)
			break;
	close(backend->fd);
	backend->fd = -1;
}
