#ifndef ROOST_LOG_H
#define ROOST_LOG_H

#include <stdbool.h>

/*
 * Leveled logging, one line per event, fields as key=value so lines can be
 * grepped and parsed: `log_info("conn=%lu peer=%s proto=imap event=login
 * user=%s", ...)`. Lines go to stderr (foreground) and optionally syslog.
 * Credentials never reach the log. Thread-safe: each call writes one line
 * with a single write(2).
 */
enum log_level { LOG_LEVEL_ERROR, LOG_LEVEL_WARN, LOG_LEVEL_INFO, LOG_LEVEL_DEBUG };

/* Set the threshold and sinks; before the call: info to stderr. */
void log_setup(enum log_level level, bool to_stderr, bool to_syslog);
/* Parse "error", "warn", "info", "debug"; ROOST_EINVAL otherwise. */
int log_level_parse(const char *name, enum log_level *level_r);
const char *log_level_name(enum log_level level);
bool log_enabled(enum log_level level);

void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_error(...) log_msg(LOG_LEVEL_ERROR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_LEVEL_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_LEVEL_INFO, __VA_ARGS__)
#define log_debug(...) do { if (log_enabled(LOG_LEVEL_DEBUG)) log_msg(LOG_LEVEL_DEBUG, __VA_ARGS__); } while (0)

/* Log at error level and exit(1). Start-up and broken invariants only. */
void fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

#endif
