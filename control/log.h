/*
 * log.h: tether-control's log, syslog levels on stderr.
 *
 * One line per event that an operator acts on (a backend going down, a reload,
 * the dataplane connection), never one per packet or per check.  Under systemd
 * (JOURNAL_STREAM set) each line starts with the "<N>" priority prefix that
 * journald reads, so `journalctl -p warning` works; on a terminal it starts with
 * the time and the level's name.  Each line is one write(2), so lines from
 * several processes sharing stderr never interleave.
 */
#ifndef TETHER_LOG_H
#define TETHER_LOG_H

#include <syslog.h>   /* LOG_ERR .. LOG_DEBUG */

/* Log `priority` (LOG_ERR..LOG_DEBUG) and above; default LOG_INFO. */
void log_set_level(int priority);

/* "err", "warning", "notice", "info", "debug" (also "error", "warn") -> the
 * priority, or -1 for anything else. */
int log_level_parse(const char *name);

void log_message(int priority, const char *format, ...)
	__attribute__((format(printf, 2, 3)));

#define log_error(...)   log_message(LOG_ERR, __VA_ARGS__)
#define log_warning(...) log_message(LOG_WARNING, __VA_ARGS__)
#define log_notice(...)  log_message(LOG_NOTICE, __VA_ARGS__)
#define log_info(...)    log_message(LOG_INFO, __VA_ARGS__)
#define log_debug(...)   log_message(LOG_DEBUG, __VA_ARGS__)

#endif /* TETHER_LOG_H */
