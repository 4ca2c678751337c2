#ifndef ROOST_CONFIG_H
#define ROOST_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/*
 * The effective configuration: one INI-like file (`[section]`, `key = value`,
 * `#` comments) laid over built-in defaults. Every key has a default, so an
 * absent file is a complete configuration. A `#` after a blank ends a value
 * (a trailing comment); a value in double quotes is unquoted (\" and \\
 * inside, `#` is text there), one in single quotes taken as written; an
 * unterminated quote is an error. Values by type:
 *   string     the rest of the line, trimmed
 *   bool       yes/no/true/false/on/off/1/0
 *   count      decimal integer within the key's range
 *   size       integer with optional K, M, G suffix (powers of 1024)
 *   duration   integer with optional s, m, h suffix (seconds by default)
 *   mode       octal permission bits, as chmod takes them (0660)
 *   listen     "off" or a comma-separated list of addresses:
 *              127.0.0.1:2143, [::1]:2143, *:2143, or unix:/path (lmtp only)
 *
 * A configuration is immutable once loaded (or once config_reload_merge()
 * has run on it) and may be read from any thread. A running server holds
 * its live configuration behind an atomic pointer (server_config()).
 * Adding a key: add the field here and its row in core/config.c's table.
 */

struct config_listen {
	char **addrs; /* NULL-terminated; empty (addrs[0] == NULL) = disabled */
};

struct roost_config {
	char *path; /* file it came from, NULL when only defaults */

	/* [server] */
	char *hostname;   /* default: gethostname() */
	char *data_dir;   /* default: ./var */
	unsigned workers; /* worker threads; default 4 x cores (blocking disk I/O) */
	unsigned loops;   /* event loop threads; default: one per core */
	char *log_level;  /* error|warn|info|debug; default info */
	bool log_syslog;  /* default no */

	/* [storage] */
	char *storage_backend;  /* lmdb (default) | maildir */
	uint64_t lmdb_map_size; /* initial map size; grows on demand; default 1G */
	unsigned lmdb_shards;   /* environments, users hashed over them; default 1 */
	bool storage_fsync;     /* default yes; no = benchmarks only, loses mail on crash */
	char *pgsql_dsn;        /* libpq connection string for backend = pgsql */
	uint64_t
	    expunge_log_retention; /* seconds expunged UIDs are kept for QRESYNC; default 30d */

	/* [quota] defaults for users whose passwd line sets none (auth.h) */
	uint64_t quota_storage;         /* octets of mail per user; default 0 = no limit */
	unsigned quota_messages;        /* messages per user; default 0 = no limit */
	char **quota_admins;            /* users who may SETQUOTA over IMAP; default none */
	unsigned quota_warning;         /* % of a limit whose crossing sends a notice; 90; 0 off */
	uint64_t quota_shared_storage;  /* octets of the Shared/ namespace; default 0 = none */
	unsigned quota_shared_messages; /* messages of the Shared/ namespace; default 0 = none */

	/* [acl] */
	char **acl_shared_admins; /* users with every right on Shared/; default none */
	char *acl_shared_prefix;  /* the shared namespace's name; "Shared"; "" none */

	/* [listen] */
	struct config_listen listen_smtp;       /* default 127.0.0.1:2525 */
	struct config_listen listen_submission; /* default 127.0.0.1:2587 */
	struct config_listen listen_smtps;      /* default 127.0.0.1:2465 */
	struct config_listen listen_lmtp;       /* default unix:<data_dir>/lmtp.sock */
	struct config_listen listen_imap;       /* default 127.0.0.1:2143 */
	struct config_listen listen_imaps;      /* default 127.0.0.1:2993 */
	struct config_listen listen_pop3;       /* default 127.0.0.1:2110 */
	struct config_listen listen_pop3s;      /* default 127.0.0.1:2995 */
	struct config_listen listen_http;       /* default 127.0.0.1:2080 */
	struct config_listen listen_https;      /* default 127.0.0.1:2443 */
	struct config_listen listen_metrics;    /* /metrics; default off */
	unsigned lmtp_socket_mode;              /* unix listeners' mode; default 0660 */
	char *lmtp_socket_group;                /* their group; "" (default) = the server's own */

	/* [http] */
	char *http_www_dir;        /* the web page's files; default: installed share dir */
	uint64_t http_max_head;    /* request line and header fields; default 32K */
	unsigned http_max_fields;  /* header fields; default 100 */
	uint64_t http_max_request; /* body of an API request (JMAP maxSizeRequest); 10M */
	unsigned http_push_ping;   /* seconds between EventSource pings at most; default 60 */
	/* JMAP PushSubscription (RFC 8620 7.2) */
	unsigned http_push_subscriptions; /* per user; 0: none; default 16 */
	unsigned http_push_timeout;       /* seconds per push POST; default 10 */
	unsigned http_push_retry;         /* seconds before the first retry, doubling; default 30 */
	unsigned http_push_max_failures;  /* failures in a row that drop one; default 10 */
	unsigned http_push_expiry;        /* seconds a subscription lives at most; 7d */
	bool http_push_private_urls;      /* loopback/private URLs, http to loopback (tests); no */
	char *http_push_ca_file;          /* more trusted certificates for pushes; "" none */

	/* [tls] */
	char *tls_cert; /* PEM; default: <data_dir>/tls/cert.pem, self-signed on first start */
	char *tls_key;  /* PEM; default: <data_dir>/tls/key.pem */
	char *tls_min_protocol; /* TLSv1.2 (default) | TLSv1.3 */
	char *tls_ciphers;      /* TLS 1.2 cipher list; default OpenSSL's HIGH:!aNULL:!MD5 */
	char *tls_ciphersuites; /* TLS 1.3 suites; default OpenSSL's */

	/* [auth] */
	char *passwd_file;           /* default <data_dir>/passwd */
	char *password_scheme;       /* scheme for new passwords; default SHA512-CRYPT */
	bool plaintext_insecure;     /* allow PLAIN/LOGIN without TLS off loopback; default no */
	unsigned fail_delay_initial; /* seconds after the first failure; default 2 */
	unsigned fail_delay_max;     /* cap of the doubling delay; default 15 */
	unsigned auth_cache_ttl;     /* seconds a verified credential is cached; default 300 */

	/* [limits] */
	unsigned max_connections;        /* default 20000 */
	unsigned max_connections_per_ip; /* default 200 */
	unsigned preauth_idle_timeout;   /* seconds; default 60 */
	unsigned idle_timeout;           /* seconds, after login; default 1800 */
	unsigned command_timeout; /* seconds to receive a whole command / flush; default 300 */
	unsigned tls_handshake_timeout; /* seconds; default 30 */
	unsigned shutdown_grace;        /* seconds running commands get at shutdown; default 10 */
	uint64_t max_line;              /* command line bytes after login; default 64K */
	uint64_t max_line_preauth;      /* before login; default 8K */
	uint64_t max_message_size;      /* default 50M */
	unsigned max_recipients;        /* default 1000 */
	unsigned mime_max_depth;        /* default 100 */
	unsigned mime_max_parts;        /* default 10000 */
	uint64_t max_header_size;       /* bytes of one message header block; default 1M */
	unsigned max_header_fields;     /* default 10000 */

	/* [smtp] */
	char **smtp_domains;       /* NULL-terminated local domains; default: hostname, localhost */
	unsigned smtp_max_errors;  /* 421 and close after this many; default 20 */
	char *smtp_bare_lf;        /* reject (default) | normalize */
	char *recipient_delimiter; /* default "+"; "" disables */
	char **smtp_trusted_networks;           /* CIDRs that may relay unauthenticated; default
	                                         * loopback (127.0.0.0/8, ::1); empty = none */
	char *smtp_aliases;                     /* aliases file (roost/aliases.h); "" = none */
	unsigned smtp_user_messages_per_hour;   /* per authenticated user; default 500, 0 = off */
	unsigned smtp_user_recipients_per_hour; /* default 2000, 0 = off */
	unsigned smtp_rate_users;               /* users the counters keep; default 10000 */

	/* [relay] outbound delivery */
	char *relay_smarthost;      /* "host:port": send everything there; "" = MX */
	char *relay_smarthost_user; /* AUTH PLAIN at the smarthost; "" = none */
	char *relay_smarthost_password;
	bool relay_smarthost_tls_verify;   /* verify its certificate; default yes */
	unsigned relay_mx_port;            /* port of MX hosts; default 25 (tests change it) */
	char **relay_tls_required;         /* domains delivered only over TLS */
	char *relay_tls_policy;            /* none, may (default), encrypt, verify */
	char **relay_tls_policies;         /* "domain:policy" overriding it */
	char *relay_tls_ca_file;           /* CAs for MX certificates; "" = the system's */
	bool relay_mta_sts;                /* follow MTA-STS (RFC 8461); default yes */
	unsigned relay_mta_sts_port;       /* its HTTPS port; default 443 (tests change it) */
	unsigned relay_queue_lifetime;     /* seconds before a bounce; default 5d */
	unsigned relay_delay_warning;      /* seconds before a delay DSN; default 4h, 0 = never */
	unsigned relay_retry_min;          /* first retry interval; default 5m, doubling */
	unsigned relay_retry_max;          /* cap of the interval; default 1h */
	unsigned relay_max_connections;    /* outbound connections in total; default 20 */
	unsigned relay_max_per_domain;     /* per destination domain; default 4 */
	unsigned relay_connect_timeout;    /* seconds; default 30 */
	unsigned relay_command_timeout;    /* seconds per reply; default 300 */
	unsigned relay_max_per_connection; /* messages over one connection; default 100 */
	char *dkim_selector;               /* default "roost" */
	char *dkim_dir; /* keys <dkim_dir>/<domain>.key; default <data_dir>/dkim */

	/* [dns] */
	char **dns_servers;   /* "ip[:port]" list; default: the system's resolv.conf */
	unsigned dns_timeout; /* seconds per lookup; default 10 */

	/* [imap] */
	unsigned imap_max_connections_per_user_ip; /* default 10 */
	unsigned imap_max_bad_commands;            /* default 20 */
	unsigned imap_idle_keepalive;      /* seconds between "* OK Still here"; default 120 */
	uint64_t imap_max_literal;         /* default: max_message_size */
	uint64_t imap_search_budget;       /* bytes one SEARCH may scan; default 1G */
	bool imap_literal_minus;           /* LITERAL- instead of LITERAL+; default no */
	unsigned imap_inprogress_interval; /* ms between INPROGRESS lines; default 1000 */

	/* [pop3] */
	unsigned pop3_max_bad_commands; /* default 20 */
};

/*
 * Load path (NULL: ./roost.conf when it exists, else defaults only) into a
 * new configuration. On error returns ROOST_ECONFIG and writes a message
 * naming file, line and key into err (at most errlen bytes); nothing is
 * allocated then.
 */
int config_load(const char *path, struct roost_config **cfg_r, char *err, size_t errlen);
/* Defaults only (tests). */
struct roost_config *config_defaults(void);
/* Print the effective configuration, every key, in the file format. */
void config_print(const struct roost_config *cfg, FILE *out);
void config_free(struct roost_config **cfg);

/*
 * For `roost reload`: compare next (just loaded) with old (running) key by
 * key. For each key whose value differs, fn(arg, "section.key", live): live
 * when the running server applies the key (core/config.c lists them: log
 * level, TLS files and settings, timeouts, per-IP and per-message limits,
 * error counts, sending rates); otherwise the key needs a restart
 * (listeners, data_dir, backend, workers...) and next gets old's value back,
 * so next can be published as the running configuration with no value
 * that the server does not actually use. Neither is shared with other
 * threads yet; not thread-safe.
 */
typedef void config_change_fn(void *arg, const char *name, bool live);
void config_reload_merge(const struct roost_config *old, struct roost_config *next,
                         config_change_fn *fn, void *arg);

/* Parse one listen address ("127.0.0.1:2143", "[::1]:143", "*:25", "unix:/p"). */
struct config_addr {
	bool is_unix;
	char host[256]; /* "" for any address */
	char path[108]; /* unix socket path */
	uint16_t port;
};
int config_parse_addr(const char *spec, struct config_addr *addr_r);

/* The blank rule of Roost's text files (this configuration and the aliases
 * file): s without its leading spaces and tabs, its trailing blanks and line
 * end cut off in place. Returns a pointer into s. */
char *config_trim(char *s);

#endif
