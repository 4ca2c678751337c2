#ifndef ROOST_LOG_H
#define ROOST_LOG_H

#include <stdbool.h>
#include <stddef.h>

/*
 * Leveled logging, one line per event, fields as key=value so lines can be
 * grepped and parsed, in one dialect: event=name first (snake_case), then
 * the fields, `log_info("event=reloaded file=aliases path=%s", ...)`. A line
 * about a connection goes through conn_log() (roost/conn.h), the one place
 * that writes conn=, peer=, proto= and user=. Lines go to stderr (foreground) and
 * optionally syslog. Credentials never reach the log. Every value that came
 * from a client (addresses, user names, mailbox names, EHLO and ID strings)
 * goes through LOG_QUOTE(), so it cannot end its field or add another.
 * Thread-safe: each call writes one line with a single write(2).
 */
enum log_level { LOG_LEVEL_ERROR, LOG_LEVEL_WARN, LOG_LEVEL_INFO, LOG_LEVEL_DEBUG };

/* Set the threshold and sinks; before the call: info to stderr. */
void log_setup(enum log_level level, bool to_stderr, bool to_syslog);
/* A running server's reload: a new threshold, syslog on or off; stderr as
 * log_setup() left it. Any thread; lines being written finish in the old
 * setting. */
void log_set_level(enum log_level level, bool to_syslog);
/* Parse "error", "warn", "info", "debug"; ROOST_EINVAL otherwise. */
int log_level_parse(const char *name, enum log_level *level_r);
const char *log_level_name(enum log_level level);
bool log_enabled(enum log_level level);

void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_error(...) log_msg(LOG_LEVEL_ERROR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_LEVEL_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_LEVEL_INFO, __VA_ARGS__)
#define log_debug(...)                                                                             \
	do {                                                                                       \
		if (log_enabled(LOG_LEVEL_DEBUG))                                                  \
			log_msg(LOG_LEVEL_DEBUG, __VA_ARGS__);                                     \
	} while (0)

/*
 * A value as it may stand after "key=" in a log line. A non-empty run of
 * printable ASCII other than '"', '\\' and '=' is written as is; anything
 * else in double quotes, where '"' and '\\' are escaped with a backslash and
 * '=', control characters (C0, DEL, C1), line and paragraph separators,
 * bidirectional overrides and every byte that is not part of valid UTF-8 are
 * written as \xNN, one per byte. Other UTF-8 is kept. So the value never
 * holds a blank outside quotes, a quote that ends it early, or a "key=" a
 * reader could take for a field. Longer values are cut at a character and
 * end in "..." inside the quotes. NULL is written as -.
 *
 * buf: size bytes (at least 8), returned. log_quote_n takes len bytes,
 * which may include NUL.
 */
const char *log_quote(char *buf, size_t size, const char *s);
const char *log_quote_n(char *buf, size_t size, const char *s, size_t len);

/* Room for one quoted value in a log line. */
#define LOG_QUOTE_MAX 320
/* log_quote() into a buffer that lives until the end of the enclosing
 * block: log_info("user=%s", LOG_QUOTE(name)). */
#define LOG_QUOTE(s) log_quote((char[LOG_QUOTE_MAX]){0}, LOG_QUOTE_MAX, (s))
#define LOG_QUOTE_N(s, n) log_quote_n((char[LOG_QUOTE_MAX]){0}, LOG_QUOTE_MAX, (s), (n))

/* Log at error level and exit(1). Start-up and broken invariants only. */
void fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

#endif
