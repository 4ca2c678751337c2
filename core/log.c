#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "roost/error.h"
#include "roost/log.h"

static _Atomic int log_threshold = LOG_LEVEL_INFO;
static _Atomic bool log_to_stderr = true;
static _Atomic bool log_to_syslog = false;

static const char *const level_names[] = { "error", "warn", "info", "debug" };

void
log_setup(enum log_level level, bool to_stderr, bool to_syslog)
{
	log_threshold = level;
	log_to_stderr = to_stderr;
	if (to_syslog && !log_to_syslog)
		openlog("roost", LOG_PID | LOG_NDELAY, LOG_MAIL);
	log_to_syslog = to_syslog;
}

int
log_level_parse(const char *name, enum log_level *level_r)
{
	for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++) {
		if (strcmp(name, level_names[i]) == 0) {
			*level_r = (enum log_level)i;
			return 0;
		}
	}
	return ROOST_EINVAL;
}

const char *
log_level_name(enum log_level level)
{
	return (unsigned)level < 4 ? level_names[level] : "unknown";
}

bool
log_enabled(enum log_level level)
{
	return (int)level <= log_threshold;
}

static void
log_vmsg(enum log_level level, const char *fmt, va_list ap)
{
	static const int syslog_prio[] = { LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG };
	char line[2048];
	struct timespec ts;
	struct tm tm;
	va_list aq;
	int n, m;

	if (!log_enabled(level))
		return;
	if (log_to_syslog) {
		va_copy(aq, ap);
		vsyslog(syslog_prio[level], fmt, aq);
		va_end(aq);
	}
	if (!log_to_stderr)
		return;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	n = snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s ",
	    tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
	    ts.tv_nsec / 1000000, level_names[level]);
	m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
	if (m < 0)
		m = 0;
	n += m;
	if ((size_t)n > sizeof(line) - 2)
		n = sizeof(line) - 2;
	line[n++] = '\n';
	/* One write per line keeps lines from different threads whole. */
	if (write(STDERR_FILENO, line, (size_t)n) < 0) {
		/* Nowhere left to report it. */
	}
}

void
log_msg(enum log_level level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vmsg(level, fmt, ap);
	va_end(ap);
}

void
fatal(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vmsg(LOG_LEVEL_ERROR, fmt, ap);
	va_end(ap);
	exit(1);
}
