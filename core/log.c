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
#include "roost/utf8.h"

static _Atomic int log_threshold = LOG_LEVEL_INFO;
static _Atomic bool log_to_stderr = true;
static _Atomic bool log_to_syslog = false;

static const char *const level_names[] = {"error", "warn", "info", "debug"};

void
log_setup(enum log_level level, bool to_stderr, bool to_syslog)
{
	log_threshold = level;
	log_to_stderr = to_stderr;
	if (to_syslog && !log_to_syslog)
		openlog("roost", LOG_PID | LOG_NDELAY, LOG_MAIL);
	log_to_syslog = to_syslog;
}

void
log_set_level(enum log_level level, bool to_syslog)
{
	log_setup(level, log_to_stderr, to_syslog);
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
	static const int syslog_prio[] = {LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG};
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

/* A byte that may stand unquoted. */
static bool
bare_byte(unsigned char c)
{
	return c > 0x20 && c < 0x7f && c != '"' && c != '\\' && c != '=';
}

/* UTF-8 that a reader could mistake for layout: C1 controls, U+2028 and
 * U+2029 (line and paragraph separators), U+202A-U+202E and U+2066-U+2069
 * (bidirectional overrides that reorder the rest of the line on screen). */
static bool
hidden_code_point(uint32_t cp)
{
	return (cp >= 0x80 && cp <= 0x9f) || (cp >= 0x2028 && cp <= 0x202e) ||
	       (cp >= 0x2066 && cp <= 0x2069);
}

const char *
log_quote_n(char *buf, size_t size, const char *s, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *p = (const unsigned char *)s;
	size_t o = 0, i = 0;
	bool bare;

	if (s == NULL) {
		snprintf(buf, size, "-");
		return buf;
	}
	bare = len > 0 && len < size;
	for (size_t k = 0; bare && k < len; k++)
		bare = bare_byte(p[k]);
	if (bare) {
		memcpy(buf, s, len);
		buf[len] = '\0';
		return buf;
	}
	/* Quoted: keep room for "...", the closing quote and the NUL. */
	buf[o++] = '"';
	while (i < len) {
		char piece[16];
		size_t n = 0, used;
		uint32_t cp;

		if (p[i] == '"' || p[i] == '\\') {
			piece[n++] = '\\';
			piece[n++] = (char)p[i];
			used = 1;
		} else if (p[i] >= 0x20 && p[i] < 0x7f && p[i] != '=') {
			piece[n++] = (char)p[i];
			used = 1;
		} else if (p[i] >= 0x80 && (used = utf8_decode(p + i, len - i, &cp)) > 0 &&
		           !hidden_code_point(cp)) {
			memcpy(piece, p + i, used);
			n = used;
		} else {
			/* Escape the whole sequence when it is valid but hidden,
			 * else the one byte. */
			used = p[i] >= 0x80 ? utf8_decode(p + i, len - i, &cp) : 0;
			if (used == 0)
				used = 1;
			for (size_t k = 0; k < used; k++) {
				piece[n++] = '\\';
				piece[n++] = 'x';
				piece[n++] = hex[p[i + k] >> 4];
				piece[n++] = hex[p[i + k] & 15];
			}
		}
		/* Room for this piece and a later "...", or this is the last
		 * piece and it fits with the closing quote. */
		if (o + n + 5 > size && !(i + used == len && o + n + 2 <= size))
			break;
		memcpy(buf + o, piece, n);
		o += n;
		i += used;
	}
	if (i < len) {
		memcpy(buf + o, "...", 3);
		o += 3;
	}
	buf[o++] = '"';
	buf[o] = '\0';
	return buf;
}

const char *
log_quote(char *buf, size_t size, const char *s)
{
	return log_quote_n(buf, size, s, s != NULL ? strlen(s) : 0);
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
