#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdbool.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "config_impl.h"
#include "roost/config.h"
#include "roost/error.h"
#include "roost/log.h"
#include "roost/xalloc.h"

/*
 * The configuration is a table of keys, each with a type, a default and the
 * offset of its field in struct roost_config. Loading fills every field from
 * the defaults first, then lays the file over them, so a missing file or
 * key is never a special case. The printer walks the same table, so
 * `roost config` cannot forget a key.
 */

#define U32 UINT32_MAX

const struct key_def config_keys[] = {
    {"server", "hostname", T_STRING, NULL, F(hostname), 0, 0},
    {"server", "data_dir", T_STRING, "./var", F(data_dir), 0, 0},
    {"server", "workers", T_COUNT, NULL, F(workers), 1, 1024},
    {"server", "loops", T_COUNT, NULL, F(loops), 1, 256},
    {"server", "log_level", T_STRING, "info", F(log_level), 0, 0},
    {"server", "log_syslog", T_BOOL, "no", F(log_syslog), 0, 0},

    {"storage", "backend", T_STRING, "lmdb", F(storage_backend), 0, 0},
    {"storage", "lmdb_map_size", T_SIZE, "1G", F(lmdb_map_size), 1 << 20, UINT64_MAX},
    {"storage", "lmdb_shards", T_COUNT, "1", F(lmdb_shards), 1, 64},
    {"storage", "fsync", T_BOOL, "yes", F(storage_fsync), 0, 0},
    {"storage", "pgsql_dsn", T_STRING, NULL, F(pgsql_dsn), 0, 0},
    {"storage", "expunge_log_retention", T_DURATION, "30d", F(expunge_log_retention), 0,
     UINT64_MAX},

    {"quota", "storage", T_SIZE, "0", F(quota_storage), 0, (uint64_t)1 << 50},
    {"quota", "messages", T_COUNT, "0", F(quota_messages), 0, U32},
    {"quota", "admins", T_STRLIST, "", F(quota_admins), 0, 0},
    {"quota", "warning", T_COUNT, "90", F(quota_warning), 0, 100},
    {"quota", "shared_storage", T_SIZE, "0", F(quota_shared_storage), 0, (uint64_t)1 << 50},
    {"quota", "shared_messages", T_COUNT, "0", F(quota_shared_messages), 0, U32},
    {"acl", "shared_admins", T_STRLIST, "", F(acl_shared_admins), 0, 0},
    {"acl", "shared_prefix", T_STRING, "Shared", F(acl_shared_prefix), 0, 0},

    {"listen", "smtp", T_LISTEN, "127.0.0.1:2525", F(listen_smtp), 0, 0},
    {"listen", "submission", T_LISTEN, "127.0.0.1:2587", F(listen_submission), 0, 0},
    {"listen", "smtps", T_LISTEN, "127.0.0.1:2465", F(listen_smtps), 0, 0},
    /* lmtp: unix:<data_dir>/lmtp.sock, computed in derive(). */
    {"listen", "lmtp", T_LISTEN, NULL, F(listen_lmtp), 0, 0},
    {"listen", "lmtp_socket_mode", T_MODE, "0660", F(lmtp_socket_mode), 0, 0777},
    {"listen", "lmtp_socket_group", T_STRING, "", F(lmtp_socket_group), 0, 0},
    {"listen", "imap", T_LISTEN, "127.0.0.1:2143", F(listen_imap), 0, 0},
    {"listen", "imaps", T_LISTEN, "127.0.0.1:2993", F(listen_imaps), 0, 0},
    {"listen", "pop3", T_LISTEN, "127.0.0.1:2110", F(listen_pop3), 0, 0},
    {"listen", "pop3s", T_LISTEN, "127.0.0.1:2995", F(listen_pop3s), 0, 0},
    {"listen", "http", T_LISTEN, "127.0.0.1:2080", F(listen_http), 0, 0},
    {"listen", "https", T_LISTEN, "127.0.0.1:2443", F(listen_https), 0, 0},
    {"listen", "metrics", T_LISTEN, "off", F(listen_metrics), 0, 0},

    {"http", "www_dir", T_STRING, "", F(http_www_dir), 0, 0},
    {"http", "max_head", T_SIZE, "32K", F(http_max_head), 1024, 1 << 20},
    {"http", "max_fields", T_COUNT, "100", F(http_max_fields), 8, 256},
    {"http", "max_request", T_SIZE, "10M", F(http_max_request), 1024, 1 << 30},
    {"http", "push_ping", T_DURATION, "60", F(http_push_ping), 1, 3600},
    {"http", "push_subscriptions", T_COUNT, "16", F(http_push_subscriptions), 0, 256},
    {"http", "push_timeout", T_DURATION, "10", F(http_push_timeout), 1, 300},
    {"http", "push_retry", T_DURATION, "30", F(http_push_retry), 1, 3600},
    {"http", "push_max_failures", T_COUNT, "10", F(http_push_max_failures), 1, 1000},
    {"http", "push_expiry", T_DURATION, "7d", F(http_push_expiry), 60, 365 * 86400},
    {"http", "push_private_urls", T_BOOL, "no", F(http_push_private_urls), 0, 0},
    {"http", "push_ca_file", T_STRING, "", F(http_push_ca_file), 0, 0},

    {"tls", "cert", T_STRING, NULL, F(tls_cert), 0, 0},
    {"tls", "key", T_STRING, NULL, F(tls_key), 0, 0},
    {"tls", "min_protocol", T_STRING, "TLSv1.2", F(tls_min_protocol), 0, 0},
    {"tls", "ciphers", T_STRING, "HIGH:!aNULL:!MD5", F(tls_ciphers), 0, 0},
    {"tls", "ciphersuites", T_STRING,
     "TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256",
     F(tls_ciphersuites), 0, 0},

    {"auth", "passwd_file", T_STRING, NULL, F(passwd_file), 0, 0},
    {"auth", "password_scheme", T_STRING, "SHA512-CRYPT", F(password_scheme), 0, 0},
    {"auth", "plaintext_insecure", T_BOOL, "no", F(plaintext_insecure), 0, 0},
    {"auth", "fail_delay_initial", T_DURATION, "2", F(fail_delay_initial), 0, 3600},
    {"auth", "fail_delay_max", T_DURATION, "15", F(fail_delay_max), 0, 3600},
    {"auth", "cache_ttl", T_DURATION, "300", F(auth_cache_ttl), 0, 86400},

    {"limits", "max_connections", T_COUNT, "20000", F(max_connections), 1, 10000000},
    {"limits", "max_connections_per_ip", T_COUNT, "200", F(max_connections_per_ip), 1, 10000000},
    {"limits", "preauth_idle_timeout", T_DURATION, "60", F(preauth_idle_timeout), 1, U32},
    {"limits", "idle_timeout", T_DURATION, "1800", F(idle_timeout), 1, U32},
    {"limits", "command_timeout", T_DURATION, "300", F(command_timeout), 1, U32},
    {"limits", "tls_handshake_timeout", T_DURATION, "30", F(tls_handshake_timeout), 1, U32},
    {"limits", "shutdown_grace", T_DURATION, "10", F(shutdown_grace), 0, U32},
    {"limits", "max_line", T_SIZE, "64K", F(max_line), 512, 1 << 30},
    {"limits", "max_line_preauth", T_SIZE, "8K", F(max_line_preauth), 512, 1 << 30},
    {"limits", "max_message_size", T_SIZE, "50M", F(max_message_size), 1024, (uint64_t)1 << 40},
    {"limits", "max_recipients", T_COUNT, "1000", F(max_recipients), 1, 1000000},
    {"limits", "mime_max_depth", T_COUNT, "100", F(mime_max_depth), 1, 10000},
    {"limits", "mime_max_parts", T_COUNT, "10000", F(mime_max_parts), 1, 10000000},
    {"limits", "max_header_size", T_SIZE, "1M", F(max_header_size), 1024, 1 << 30},
    {"limits", "max_header_fields", T_COUNT, "10000", F(max_header_fields), 1, 10000000},

    {"smtp", "domains", T_STRLIST, NULL, F(smtp_domains), 0, 0},
    {"smtp", "max_errors", T_COUNT, "20", F(smtp_max_errors), 1, 100000},
    {"smtp", "bare_lf", T_STRING, "reject", F(smtp_bare_lf), 0, 0},
    {"smtp", "recipient_delimiter", T_STRING, "+", F(recipient_delimiter), 0, 0},
    {"smtp", "trusted_networks", T_STRLIST, NULL, F(smtp_trusted_networks), 0, 0},
    {"smtp", "aliases", T_STRING, "", F(smtp_aliases), 0, 0},
    {"smtp", "user_messages_per_hour", T_COUNT, "500", F(smtp_user_messages_per_hour), 0, 1000000},
    {"smtp", "user_recipients_per_hour", T_COUNT, "2000", F(smtp_user_recipients_per_hour), 0,
     10000000},
    {"smtp", "rate_users", T_COUNT, "10000", F(smtp_rate_users), 1, 10000000},

    {"relay", "smarthost", T_STRING, "", F(relay_smarthost), 0, 0},
    {"relay", "smarthost_user", T_STRING, "", F(relay_smarthost_user), 0, 0},
    {"relay", "smarthost_password", T_STRING, "", F(relay_smarthost_password), 0, 0},
    {"relay", "smarthost_tls_verify", T_BOOL, "yes", F(relay_smarthost_tls_verify), 0, 0},
    {"relay", "mx_port", T_COUNT, "25", F(relay_mx_port), 1, 65535},
    {"relay", "tls_required", T_STRLIST, "", F(relay_tls_required), 0, 0},
    {"relay", "tls_policy", T_STRING, "may", F(relay_tls_policy), 0, 0},
    {"relay", "tls_policies", T_STRLIST, "", F(relay_tls_policies), 0, 0},
    {"relay", "tls_ca_file", T_STRING, "", F(relay_tls_ca_file), 0, 0},
    {"relay", "mta_sts", T_BOOL, "yes", F(relay_mta_sts), 0, 0},
    {"relay", "mta_sts_port", T_COUNT, "443", F(relay_mta_sts_port), 1, 65535},
    {"relay", "queue_lifetime", T_DURATION, "5d", F(relay_queue_lifetime), 1, U32},
    {"relay", "delay_warning", T_DURATION, "4h", F(relay_delay_warning), 0, U32},
    {"relay", "retry_min", T_DURATION, "5m", F(relay_retry_min), 1, U32},
    {"relay", "retry_max", T_DURATION, "1h", F(relay_retry_max), 1, U32},
    {"relay", "max_connections", T_COUNT, "20", F(relay_max_connections), 1, 10000},
    {"relay", "max_per_domain", T_COUNT, "4", F(relay_max_per_domain), 1, 10000},
    {"relay", "connect_timeout", T_DURATION, "30", F(relay_connect_timeout), 1, 3600},
    {"relay", "command_timeout", T_DURATION, "300", F(relay_command_timeout), 1, 3600},
    {"relay", "max_per_connection", T_COUNT, "100", F(relay_max_per_connection), 1, 1000000},
    {"relay", "dkim_selector", T_STRING, "roost", F(dkim_selector), 0, 0},
    {"relay", "dkim_dir", T_STRING, NULL, F(dkim_dir), 0, 0},

    {"dns", "servers", T_STRLIST, "", F(dns_servers), 0, 0},
    {"dns", "timeout", T_DURATION, "10", F(dns_timeout), 1, 3600},

    {"imap", "max_connections_per_user_ip", T_COUNT, "10", F(imap_max_connections_per_user_ip), 1,
     1000000},
    {"imap", "max_bad_commands", T_COUNT, "20", F(imap_max_bad_commands), 1, 100000},
    {"imap", "idle_keepalive", T_DURATION, "120", F(imap_idle_keepalive), 1, U32},
    {"imap", "max_literal", T_SIZE, NULL, F(imap_max_literal), 1024, (uint64_t)1 << 40},
    {"imap", "search_budget", T_SIZE, "1G", F(imap_search_budget), 1 << 20, (uint64_t)1 << 40},
    {"imap", "literal_minus", T_BOOL, "no", F(imap_literal_minus), 0, 0},
    {"imap", "inprogress_interval", T_COUNT, "1000", F(imap_inprogress_interval), 1, 3600000},

    {"pop3", "max_bad_commands", T_COUNT, "20", F(pop3_max_bad_commands), 1, 100000},
};

#define N_KEYS (sizeof(config_keys) / sizeof(config_keys[0]))
#define keys config_keys
const size_t config_n_keys = N_KEYS;

static const char *const sections[] = {
    "server", "storage", "quota", "acl", "listen", "tls",  "auth",
    "limits", "smtp",    "relay", "dns", "imap",   "pop3", "http",
};

static long
cpu_count(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	return n < 1 ? 1 : n;
}

static void
apply_defaults(struct roost_config *cfg)
{
	char host[256];

	for (size_t i = 0; i < N_KEYS; i++) {
		char why[8];

		if (keys[i].def != NULL &&
		    config_set_value(cfg, &keys[i], keys[i].def, why, sizeof(why)) != 0)
			abort(); /* a bad built-in default is a programming error */
	}
	if (gethostname(host, sizeof(host)) != 0 || host[0] == '\0')
		snprintf(host, sizeof(host), "localhost");
	host[sizeof(host) - 1] = '\0';
	cfg->hostname = xstrdup(host);
	cfg->workers = (unsigned)(cpu_count() * 4 < 8 ? 8 : cpu_count() * 4);
	cfg->loops = (unsigned)cpu_count();
}

/* Values that depend on others, filled after the file is read. */
static void
derive(struct roost_config *cfg)
{
	char path[PATH_MAX];

	if (cfg->tls_cert == NULL) {
		snprintf(path, sizeof(path), "%s/tls/cert.pem", cfg->data_dir);
		cfg->tls_cert = xstrdup(path);
	}
	if (cfg->tls_key == NULL) {
		snprintf(path, sizeof(path), "%s/tls/key.pem", cfg->data_dir);
		cfg->tls_key = xstrdup(path);
	}
	if (cfg->passwd_file == NULL) {
		snprintf(path, sizeof(path), "%s/passwd", cfg->data_dir);
		cfg->passwd_file = xstrdup(path);
	}
	if (cfg->listen_lmtp.addrs == NULL) {
		/* LMTP hands mail to any user without the SMTP checks: by default
		 * only processes that may enter data_dir reach it, not every local
		 * process as a TCP port would. A unix socket path wants to be
		 * absolute (the server may run elsewhere than it was configured). */
		char cwd[PATH_MAX];
		int n;

		if (cfg->data_dir[0] == '/' || getcwd(cwd, sizeof(cwd)) == NULL)
			n = snprintf(path, sizeof(path), "unix:%s/lmtp.sock", cfg->data_dir);
		else
			n = snprintf(path, sizeof(path), "unix:%s/%s/lmtp.sock", cwd,
			             strncmp(cfg->data_dir, "./", 2) == 0 ? cfg->data_dir + 2
			                                                  : cfg->data_dir);
		cfg->listen_lmtp.addrs = xcalloc(2, sizeof(char *));
		cfg->listen_lmtp.addrs[0] = xstrdup(n > 0 && (size_t)n < sizeof(path) ? path : "");
	}
	if (cfg->smtp_domains == NULL) {
		cfg->smtp_domains = xcalloc(3, sizeof(char *));
		cfg->smtp_domains[0] = xstrdup(cfg->hostname);
		cfg->smtp_domains[1] = xstrdup("localhost");
	}
	if (cfg->smtp_trusted_networks == NULL) {
		cfg->smtp_trusted_networks = xcalloc(3, sizeof(char *));
		cfg->smtp_trusted_networks[0] = xstrdup("127.0.0.0/8");
		cfg->smtp_trusted_networks[1] = xstrdup("::1/128");
	}
	if (cfg->dkim_dir == NULL) {
		snprintf(path, sizeof(path), "%s/dkim", cfg->data_dir);
		cfg->dkim_dir = xstrdup(path);
	}
	if (cfg->imap_max_literal == 0)
		cfg->imap_max_literal = cfg->max_message_size;
}

/* [acl] shared_prefix: empty (no shared namespace) or a top-level name
 * that every protocol and the storage names rules take as is: ASCII
 * letters, digits, ' ', '-', '_', '.', not at either end a space or a dot,
 * never INBOX (any case) nor the other users' prefix. */
static bool
shared_prefix_valid(const char *p)
{
	size_t len = strlen(p);

	if (len == 0)
		return true;
	if (len > 64 || p[0] == ' ' || p[0] == '.' || p[len - 1] == ' ' || p[len - 1] == '.' ||
	    strcasecmp(p, "INBOX") == 0 || strcmp(p, "Other Users") == 0)
		return false;
	for (size_t i = 0; i < len; i++) {
		if (!isalnum((unsigned char)p[i]) && strchr(" -_.", p[i]) == NULL)
			return false;
	}
	return true;
}

/* Checks that involve more than one value or a value's meaning. */
static int
validate(const struct roost_config *cfg, char *err, size_t errlen, const char *file)
{
	if (strcmp(cfg->storage_backend, "lmdb") != 0 &&
	    strcmp(cfg->storage_backend, "maildir") != 0 &&
	    strcmp(cfg->storage_backend, "pgsql") != 0) {
		snprintf(err, errlen,
		         "%s: [storage] backend: unknown backend \"%s\" (lmdb, maildir, pgsql)",
		         file, cfg->storage_backend);
		return ROOST_ECONFIG;
	}
	if (strcmp(cfg->storage_backend, "pgsql") == 0 && cfg->pgsql_dsn == NULL) {
		snprintf(err, errlen, "%s: [storage] backend = pgsql needs pgsql_dsn", file);
		return ROOST_ECONFIG;
	}
	if (strcmp(cfg->log_level, "error") != 0 && strcmp(cfg->log_level, "warn") != 0 &&
	    strcmp(cfg->log_level, "info") != 0 && strcmp(cfg->log_level, "debug") != 0) {
		snprintf(err, errlen,
		         "%s: [server] log_level: \"%s\" is not error, warn, info or debug", file,
		         cfg->log_level);
		return ROOST_ECONFIG;
	}
	if (strcmp(cfg->tls_min_protocol, "TLSv1.2") != 0 &&
	    strcmp(cfg->tls_min_protocol, "TLSv1.3") != 0) {
		snprintf(err, errlen, "%s: [tls] min_protocol: \"%s\" is not TLSv1.2 or TLSv1.3",
		         file, cfg->tls_min_protocol);
		return ROOST_ECONFIG;
	}
	if (strcmp(cfg->smtp_bare_lf, "reject") != 0 &&
	    strcmp(cfg->smtp_bare_lf, "normalize") != 0) {
		snprintf(err, errlen, "%s: [smtp] bare_lf: \"%s\" is not reject or normalize", file,
		         cfg->smtp_bare_lf);
		return ROOST_ECONFIG;
	}
	if (cfg->data_dir[0] == '\0') {
		snprintf(err, errlen, "%s: [server] data_dir: must not be empty", file);
		return ROOST_ECONFIG;
	}
	if (!shared_prefix_valid(cfg->acl_shared_prefix)) {
		snprintf(
		    err, errlen,
		    "%s: [acl] shared_prefix: \"%s\" is not one mailbox name of at most 64 "
		    "letters, digits, spaces, '-', '_' or '.' (not INBOX, not Other Users), or "
		    "empty",
		    file, cfg->acl_shared_prefix);
		return ROOST_ECONFIG;
	}
	for (char **a = cfg->listen_lmtp.addrs; a != NULL && *a != NULL; a++) {
		struct config_addr addr;

		if (config_parse_addr(*a, &addr) != 0) {
			/* Only the computed default can get here: a configured value
			 * was parsed when it was read. */
			snprintf(
			    err, errlen,
			    "%s: [listen] lmtp: the default socket <data_dir>/lmtp.sock is too "
			    "long a path for a unix socket (%zu bytes at most); set [listen] "
			    "lmtp",
			    file, sizeof(addr.path) - 1);
			return ROOST_ECONFIG;
		}
	}
	/* unix: sockets make sense for LMTP only (behind a local MTA). */
	{
		const struct config_listen *tcp_only[] = {
		    &cfg->listen_smtp,    &cfg->listen_submission, &cfg->listen_smtps,
		    &cfg->listen_imap,    &cfg->listen_imaps,      &cfg->listen_pop3,
		    &cfg->listen_pop3s,   &cfg->listen_http,       &cfg->listen_https,
		    &cfg->listen_metrics,
		};

		for (size_t i = 0; i < sizeof(tcp_only) / sizeof(tcp_only[0]); i++) {
			for (char **a = tcp_only[i]->addrs; a != NULL && *a != NULL; a++) {
				if (strncmp(*a, "unix:", 5) == 0) {
					snprintf(
					    err, errlen,
					    "%s: [listen]: unix sockets are for lmtp only (%s)",
					    file, *a);
					return ROOST_ECONFIG;
				}
			}
		}
	}
	return 0;
}

/*
 * The value part of "key = value" (text after '='), in place: blanks
 * around it dropped, a trailing comment (a '#' after a blank) dropped, and
 * a value in double quotes unquoted (\" and \\ inside; then a '#' is text)
 * or in single quotes taken as written. An unterminated quote or text after
 * the closing one is an error, with the reason in why.
 */
static int
value_text(char *text, char **value_r, char *why, size_t whylen)
{
	char *v = text, *end;

	while (*v == ' ' || *v == '\t')
		v++;
	if (*v == '"' || *v == '\'') {
		char q = *v, *out = v, *in = v + 1;

		for (; *in != '\0' && *in != q; in++) {
			if (q == '"' && *in == '\\' && (in[1] == '"' || in[1] == '\\'))
				in++;
			*out++ = *in;
		}
		if (*in != q) {
			snprintf(why, whylen, "unterminated %s quote",
			         q == '"' ? "double" : "single");
			return ROOST_EINVAL;
		}
		*out = '\0';
		in = config_trim(in + 1);
		if (*in != '\0' && *in != '#') {
			snprintf(why, whylen, "text after the closing quote");
			return ROOST_EINVAL;
		}
		*value_r = v;
		return 0;
	}
	for (end = v; *end != '\0'; end++) {
		if (*end == '#' && (end == v || end[-1] == ' ' || end[-1] == '\t')) {
			*end = '\0';
			break;
		}
	}
	*value_r = config_trim(v);
	return 0;
}

static const struct key_def *
find_key(const char *section, const char *key)
{
	for (size_t i = 0; i < N_KEYS; i++) {
		if (strcmp(keys[i].section, section) == 0 && strcmp(keys[i].key, key) == 0)
			return &keys[i];
	}
	return NULL;
}

static bool
known_section(const char *name)
{
	for (size_t i = 0; i < sizeof(sections) / sizeof(sections[0]); i++) {
		if (strcmp(sections[i], name) == 0)
			return true;
	}
	return false;
}

static int
load_file(struct roost_config *cfg, const char *path, FILE *f, char *err, size_t errlen)
{
	char line[8192], section[64] = "";
	bool seen_section[sizeof(sections) / sizeof(sections[0])] = {false};
	bool seen_key[N_KEYS] = {false};
	unsigned lineno = 0;

	while (fgets(line, sizeof(line), f) != NULL) {
		char *s, *eq, *key, *value, why[160];
		const struct key_def *k;

		lineno++;
		if (strchr(line, '\n') == NULL && !feof(f)) {
			snprintf(err, errlen, "%s:%u: line too long", path, lineno);
			return ROOST_ECONFIG;
		}
		s = config_trim(line);
		if (*s == '\0' || *s == '#' || *s == ';')
			continue;
		if (*s == '[') {
			char *end = strchr(s, ']');
			size_t idx;

			if (end == NULL || *config_trim(end + 1) != '\0' || end - s - 1 <= 0 ||
			    (size_t)(end - s - 1) >= sizeof(section)) {
				snprintf(err, errlen, "%s:%u: malformed section header", path,
				         lineno);
				return ROOST_ECONFIG;
			}
			*end = '\0';
			snprintf(section, sizeof(section), "%s", config_trim(s + 1));
			if (!known_section(section)) {
				snprintf(err, errlen, "%s:%u: unknown section [%s]", path, lineno,
				         section);
				return ROOST_ECONFIG;
			}
			for (idx = 0; strcmp(sections[idx], section) != 0; idx++)
				;
			if (seen_section[idx]) {
				snprintf(err, errlen, "%s:%u: duplicate section [%s]", path, lineno,
				         section);
				return ROOST_ECONFIG;
			}
			seen_section[idx] = true;
			continue;
		}
		eq = strchr(s, '=');
		if (eq == NULL) {
			snprintf(err, errlen, "%s:%u: expected key = value", path, lineno);
			return ROOST_ECONFIG;
		}
		*eq = '\0';
		key = config_trim(s);
		if (value_text(eq + 1, &value, why, sizeof(why)) != 0) {
			snprintf(err, errlen, "%s:%u: [%s] %s: %s", path, lineno, section, key,
			         why);
			return ROOST_ECONFIG;
		}
		if (section[0] == '\0') {
			snprintf(err, errlen, "%s:%u: key %s outside any section", path, lineno,
			         key);
			return ROOST_ECONFIG;
		}
		k = find_key(section, key);
		if (k == NULL) {
			snprintf(err, errlen, "%s:%u: unknown key %s in [%s]", path, lineno, key,
			         section);
			return ROOST_ECONFIG;
		}
		if (seen_key[k - keys]) {
			snprintf(err, errlen, "%s:%u: duplicate key %s in [%s]", path, lineno, key,
			         section);
			return ROOST_ECONFIG;
		}
		seen_key[k - keys] = true;
		why[0] = '\0';
		if (config_set_value(cfg, k, value, why, sizeof(why)) != 0) {
			snprintf(err, errlen, "%s:%u: [%s] %s: bad value \"%s\"%s%s", path, lineno,
			         section, key, value, why[0] != '\0' ? ": " : "", why);
			return ROOST_ECONFIG;
		}
	}
	if (ferror(f)) {
		snprintf(err, errlen, "%s: read error: %s", path, strerror(errno));
		return ROOST_ECONFIG;
	}
	return 0;
}

struct roost_config *
config_defaults(void)
{
	struct roost_config *cfg = xcalloc(1, sizeof(*cfg));

	apply_defaults(cfg);
	derive(cfg);
	return cfg;
}

int
config_load(const char *path, struct roost_config **cfg_r, char *err, size_t errlen)
{
	struct roost_config *cfg = xcalloc(1, sizeof(*cfg));
	const char *label = "(defaults)";
	FILE *f = NULL;
	int ret;

	apply_defaults(cfg);
	if (path == NULL && access("roost.conf", F_OK) == 0)
		path = "roost.conf";
	if (path != NULL) {
		f = fopen(path, "r");
		if (f == NULL) {
			snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
			ret = ROOST_ECONFIG;
			goto fail;
		}
		label = path;
		cfg->path = xstrdup(path);
		if ((ret = load_file(cfg, path, f, err, errlen)) != 0)
			goto fail;
		fclose(f);
		f = NULL;
	}
	derive(cfg);
	if ((ret = validate(cfg, err, errlen, label)) != 0)
		goto fail;
	*cfg_r = cfg;
	return 0;
fail:
	if (f != NULL)
		fclose(f);
	config_free(&cfg);
	return ret;
}

void
config_free(struct roost_config **cfgp)
{
	struct roost_config *cfg = *cfgp;

	if (cfg == NULL)
		return;
	for (size_t i = 0; i < N_KEYS; i++) {
		void *field = (char *)cfg + keys[i].offset;

		switch (keys[i].type) {
		case T_STRING:
			free(*(char **)field);
			break;
		case T_LISTEN:
			config_strv_free(((struct config_listen *)field)->addrs);
			break;
		case T_STRLIST:
			config_strv_free(*(char ***)field);
			break;
		default:
			break;
		}
	}
	free(cfg->path);
	free(cfg);
	*cfgp = NULL;
}
