/*
 * check_http.c: the HTTP part of the http and https checks (relayd's
 * check_http in hce/check_tcp).
 *
 * One request, HTTP/1.0 so that the server closes after answering and no
 * keep-alive state lingers:
 *
 *   GET <path> HTTP/1.0
 *   Host: <fqdn, or the backend's address>[:<port> unless 80/443]
 *   User-Agent: tether-health
 *   Connection: close
 *
 * Only the status line is read (up to CHECK_HTTP_STATUS_MAX bytes); the body
 * is not, and whatever follows is drained and dropped at close.  The check
 * passes when the status equals the pool's expect_status.  Over https the
 * same bytes go through the SSL object that check_tls.c set up.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include <openssl/err.h>

#include "check.h"

enum check_step
check_http_begin(struct health_backend *backend)
{
	const struct config_health *health = &backend->pool->conf;
	uint16_t default_port = health->type == CONFIG_HEALTH_HTTPS ? 443 : 80;
	char address[16], port[8] = "";
	const char *host = backend->fqdn[0] != '\0' ? backend->fqdn
						    : config_format_ipv4(backend->address, address);
	int length;

	if (backend->port != default_port)
		snprintf(port, sizeof port, ":%u", backend->port);
	length = snprintf(backend->request, sizeof backend->request,
			  "GET %s HTTP/1.0\r\nHost: %s%s\r\nUser-Agent: tether-health\r\n"
			  "Connection: close\r\n\r\n",
			  health->path[0] != '\0' ? health->path : "/", host, port);
	if (length < 0 || (size_t)length >= sizeof backend->request) {
		snprintf(backend->error, sizeof backend->error, "HTTP: request too long");
		return CHECK_STEP_FAILED;
	}
	backend->request_length = (size_t)length;
	backend->request_sent = 0;
	backend->response_length = 0;
	return CHECK_STEP_DONE;
}

enum check_step
check_http_send(struct health_backend *backend)
{
	while (backend->request_sent < backend->request_length) {
		const char *data = backend->request + backend->request_sent;
		size_t left = backend->request_length - backend->request_sent;
		ssize_t sent;
		int result;

		if (backend->ssl != NULL) {
			ERR_clear_error();
			errno = 0;
			result = SSL_write(backend->ssl, data, (int)left);
			if (result > 0) {
				backend->request_sent += (size_t)result;
				continue;
			}
			switch (SSL_get_error(backend->ssl, result)) {
			case SSL_ERROR_WANT_READ:
				return CHECK_STEP_WANT_READ;
			case SSL_ERROR_WANT_WRITE:
				return CHECK_STEP_WANT_WRITE;
			default:
				check_tls_failure(backend, result, errno, "HTTP request");
				return CHECK_STEP_FAILED;
			}
		}
		sent = send(backend->fd, data, left, MSG_NOSIGNAL);
		if (sent > 0) {
			backend->request_sent += (size_t)sent;
			continue;
		}
		if (sent < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
			return CHECK_STEP_WANT_WRITE;
		snprintf(backend->error, sizeof backend->error, "HTTP: send: %s",
			 sent < 0 ? strerror(errno) : "nothing sent");
		return CHECK_STEP_FAILED;
	}
	return CHECK_STEP_DONE;
}

static bool
check_http_digit(char c)
{
	return c >= '0' && c <= '9';
}

/* Judge the status line in backend->response: "HTTP/1.1 200 OK". */
static enum check_step
check_http_status(struct health_backend *backend)
{
	const char *line = backend->response;
	size_t length = backend->response_length, shown, i;
	char printable[48];
	unsigned status;

	if (length == 0) {
		snprintf(backend->error, sizeof backend->error,
			 "HTTP: connection closed before the status line");
		return CHECK_STEP_FAILED;
	}
	/* "HTTP/" DIGIT "." DIGIT SP 3DIGIT (SP / CR / LF / end) */
	if (length < 12 || memcmp(line, "HTTP/", 5) != 0 || !check_http_digit(line[5]) ||
	    line[6] != '.' || !check_http_digit(line[7]) || line[8] != ' ' ||
	    !check_http_digit(line[9]) || !check_http_digit(line[10]) ||
	    !check_http_digit(line[11]) ||
	    (length > 12 && line[12] != ' ' && line[12] != '\r' && line[12] != '\n')) {
		for (shown = 0; shown < length && shown < 40; shown++)
			if (line[shown] == '\r' || line[shown] == '\n')
				break;
		for (i = 0; i < shown; i++)
			printable[i] = line[i] >= 0x20 && line[i] < 0x7f ? line[i] : '?';
		printable[shown] = '\0';
		snprintf(backend->error, sizeof backend->error,
			 "HTTP: malformed status line '%s'", printable);
		return CHECK_STEP_FAILED;
	}
	status = (unsigned)(line[9] - '0') * 100 + (unsigned)(line[10] - '0') * 10 +
		 (unsigned)(line[11] - '0');
	if (status != backend->pool->conf.expect_status) {
		snprintf(backend->error, sizeof backend->error, "HTTP: status %u, expected %u",
			 status, backend->pool->conf.expect_status);
		return CHECK_STEP_FAILED;
	}
	return CHECK_STEP_DONE;
}

enum check_step
check_http_receive(struct health_backend *backend)
{
	size_t room;
	ssize_t received;
	int result;

	while ((room = sizeof backend->response - 1 - backend->response_length) > 0) {
		char *end = backend->response + backend->response_length;

		if (backend->ssl != NULL) {
			ERR_clear_error();
			errno = 0;
			result = SSL_read(backend->ssl, end, (int)room);
			if (result > 0) {
				received = result;
			} else {
				switch (SSL_get_error(backend->ssl, result)) {
				case SSL_ERROR_WANT_READ:
					return CHECK_STEP_WANT_READ;
				case SSL_ERROR_WANT_WRITE:
					return CHECK_STEP_WANT_WRITE;
				case SSL_ERROR_ZERO_RETURN:
					received = 0;
					break;
				default:
					/* A server that closes without close_notify after
					 * its answer is common; judge what came. */
					if (backend->response_length > 0) {
						backend->handshake_done = false;
						ERR_clear_error();
						received = 0;
						break;
					}
					check_tls_failure(backend, result, errno, "HTTP response");
					return CHECK_STEP_FAILED;
				}
			}
		} else {
			received = recv(backend->fd, end, room, 0);
			if (received < 0) {
				if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
					return CHECK_STEP_WANT_READ;
				if (backend->response_length == 0) {
					snprintf(backend->error, sizeof backend->error,
						 "HTTP: recv: %s", strerror(errno));
					return CHECK_STEP_FAILED;
				}
				received = 0;
			}
		}
		if (received == 0)
			break;                          /* end of stream */
		backend->response_length += (size_t)received;
		backend->response[backend->response_length] = '\0';
		if (memchr(end, '\n', (size_t)received) != NULL)
			break;                          /* the status line is complete */
	}
	return check_http_status(backend);
}
