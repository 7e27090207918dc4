/*
 * log.c: see log.h.  Formatting happens into a stack buffer and the line is
 * written with one write(2): stderr may be a pipe shared with other daemons
 * (journald's stream), and stdio's buffering would split or delay lines.
 */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define LOG_LINE_MAX 2048

static int threshold = LOG_INFO;

static const struct {
	const char *name;
	int priority;
} level_names[] = {
	{ "err", LOG_ERR }, { "error", LOG_ERR }, { "warning", LOG_WARNING },
	{ "warn", LOG_WARNING }, { "notice", LOG_NOTICE }, { "info", LOG_INFO },
	{ "debug", LOG_DEBUG },
};

void
log_set_level(int priority)
{
	threshold = priority;
}

int
log_level_parse(const char *name)
{
	for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++)
		if (strcmp(name, level_names[i].name) == 0)
			return level_names[i].priority;
	return -1;
}

static const char *
priority_name(int priority)
{
	switch (priority) {
	case LOG_EMERG: case LOG_ALERT: case LOG_CRIT: case LOG_ERR: return "error";
	case LOG_WARNING: return "warning";
	case LOG_NOTICE: return "notice";
	case LOG_INFO: return "info";
	default: return "debug";
	}
}

void
log_message(int priority, const char *format, ...)
{
	char line[LOG_LINE_MAX];
	size_t length;
	va_list args;

	if (priority > threshold)
		return;
	if (getenv("JOURNAL_STREAM")) {
		length = (size_t)snprintf(line, sizeof(line), "<%d>", priority);
	} else {
		struct timespec now;
		struct tm utc;
		clock_gettime(CLOCK_REALTIME, &now);
		gmtime_r(&now.tv_sec, &utc);
		length = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%SZ ", &utc);
		length += (size_t)snprintf(line + length, sizeof(line) - length, "%s: ",
					   priority_name(priority));
	}
	va_start(args, format);
	int written = vsnprintf(line + length, sizeof(line) - length, format, args);
	va_end(args);
	length = written < 0 ? length : length + (size_t)written;
	if (length > sizeof(line) - 2)
		length = sizeof(line) - 2;   /* truncated: keep the newline */
	line[length++] = '\n';
	ssize_t ignored = write(STDERR_FILENO, line, length);
	(void)ignored;
}
