#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "roost/config.h"
#include "roost/error.h"

#include "check_config_util.h"
#include "check_run.h"

static char conf_path[64];

static const char *
write_conf(const char *text)
{
	temp_file_write(conf_path, sizeof(conf_path), "/tmp/roost-config-XXXXXX", text);
	return conf_path;
}

static int
load(const char *text, struct roost_config **cfg_r, char *err, size_t errlen)
{
	int ret = config_load(write_conf(text), cfg_r, err, errlen);

	unlink(conf_path);
	return ret;
}

START_TEST(defaults_are_complete)
{
	struct roost_config *cfg = config_defaults();

	ck_assert_str_eq(cfg->data_dir, "./var");
	ck_assert_str_eq(cfg->storage_backend, "lmdb");
	ck_assert_str_eq(cfg->listen_imap.addrs[0], "127.0.0.1:2143");
	ck_assert_str_eq(cfg->listen_smtp.addrs[0], "127.0.0.1:2525");
	/* LMTP on a unix socket under data_dir, made absolute. */
	{
		const char *l = cfg->listen_lmtp.addrs[0];
		size_t n = strlen(l), suffix = strlen("/var/lmtp.sock");

		ck_assert(strncmp(l, "unix:/", 6) == 0);
		ck_assert(n > suffix && strcmp(l + n - suffix, "/var/lmtp.sock") == 0);
		ck_assert_ptr_null(cfg->listen_lmtp.addrs[1]);
	}
	ck_assert_uint_eq(cfg->lmtp_socket_mode, 0660);
	ck_assert_str_eq(cfg->lmtp_socket_group, "");
	ck_assert_str_eq(cfg->listen_pop3s.addrs[0], "127.0.0.1:2995");
	ck_assert_str_eq(cfg->tls_cert, "./var/tls/cert.pem");
	ck_assert_str_eq(cfg->passwd_file, "./var/passwd");
	ck_assert_uint_eq(cfg->max_line, 64 * 1024);
	ck_assert_uint_eq(cfg->max_message_size, 50 * 1024 * 1024);
	ck_assert_uint_eq(cfg->imap_max_literal, cfg->max_message_size);
	ck_assert_uint_eq(cfg->imap_search_budget, 1024 * 1024 * 1024);
	ck_assert_uint_eq(cfg->expunge_log_retention, 30 * 86400);
	ck_assert(cfg->storage_fsync);
	ck_assert(!cfg->plaintext_insecure);
	ck_assert_ptr_nonnull(cfg->smtp_domains[0]);
	ck_assert_uint_ge(cfg->workers, 8);
	config_free(&cfg);
	ck_assert_ptr_null(cfg);
	config_free(&cfg);
}
END_TEST

START_TEST(file_overrides_defaults)
{
	struct roost_config *cfg = NULL;
	char err[256] = "";

	ck_assert_int_eq(
	    load("# comment\n[server]\ndata_dir = /tmp/x \nworkers=3\n"
	         "[storage]\nbackend = maildir\nfsync = off\n"
	         "[listen]\nimap = [::1]:143, 127.0.0.1:143\npop3 = off\nlmtp = unix:/run/lmtp\n"
	         "[limits]\nmax_message_size = 10M\nidle_timeout = 30m\n"
	         "[smtp]\ndomains = example.org, example.net\n",
	         &cfg, err, sizeof(err)),
	    0);
	ck_assert_str_eq(cfg->data_dir, "/tmp/x");
	ck_assert_uint_eq(cfg->workers, 3);
	ck_assert_str_eq(cfg->storage_backend, "maildir");
	ck_assert(!cfg->storage_fsync);
	ck_assert_str_eq(cfg->listen_imap.addrs[0], "[::1]:143");
	ck_assert_str_eq(cfg->listen_imap.addrs[1], "127.0.0.1:143");
	ck_assert_ptr_null(cfg->listen_imap.addrs[2]);
	ck_assert_ptr_null(cfg->listen_pop3.addrs[0]);
	ck_assert_str_eq(cfg->listen_lmtp.addrs[0], "unix:/run/lmtp");
	ck_assert_uint_eq(cfg->max_message_size, 10 * 1024 * 1024);
	ck_assert_uint_eq(cfg->idle_timeout, 1800);
	ck_assert_str_eq(cfg->smtp_domains[1], "example.net");
	ck_assert_str_eq(cfg->tls_cert, "/tmp/x/tls/cert.pem");
	config_free(&cfg);

	/* The default socket follows data_dir; TCP stays available. */
	ck_assert_int_eq(load("[server]\ndata_dir = /srv/mail\n[listen]\nlmtp_socket_mode = 0600\n"
	                      "lmtp_socket_group = postfix\n",
	                      &cfg, err, sizeof(err)),
	                 0);
	ck_assert_str_eq(cfg->listen_lmtp.addrs[0], "unix:/srv/mail/lmtp.sock");
	ck_assert_uint_eq(cfg->lmtp_socket_mode, 0600);
	ck_assert_str_eq(cfg->lmtp_socket_group, "postfix");
	config_free(&cfg);
	ck_assert_int_eq(load("[listen]\nlmtp = 127.0.0.1:2024\n", &cfg, err, sizeof(err)), 0);
	ck_assert_str_eq(cfg->listen_lmtp.addrs[0], "127.0.0.1:2024");
	config_free(&cfg);
}
END_TEST

static const struct bad_case bad_cases[] = {
    {"[server]\nbogus = 1\n", ":2: unknown key bogus"},
    {"[server]\nworkers = many\n", ":2: [server] workers: bad value"},
    {"[server]\nworkers = 0\n", "workers"},
    {"[server]\nworkers = 99999999999999999999999\n", "workers"},
    {"[server]\n[server]\n", ":2: duplicate section [server]"},
    {"[server]\nworkers = 2\nworkers = 3\n", ":3: duplicate key workers"},
    {"[nosuch]\n", "unknown section [nosuch]"},
    {"workers = 2\n", "outside any section"},
    {"[server\n", "malformed section"},
    {"[server]\njust words\n", "expected key = value"},
    {"[storage]\nbackend = sqlite\n", "unknown backend"},
    {"[listen]\nimap = 127.0.0.1\n", "[listen] imap: bad value"},
    {"[listen]\nimap = 127.0.0.1:70000\n", "port 70000 is out of range (1-65535)"},
    {"[listen]\nimap = 127.0.0.1:0\n", "port 0 is out of range"},
    {"[listen]\nimap = 127.0.0.1:imap\n", "port \"imap\" is not a number"},
    {"[listen]\nimap = 127.0.0.1\n", "has no port"},
    {"[server]\nworkers = 5000\n", "out of range (1 to 1024)"},
    {"[server]\nhostname = \"mx.example.org\n", ":2: [server] hostname: unterminated double quote"},
    {"[server]\nhostname = 'mx\n", "unterminated single quote"},
    {"[server]\nhostname = \"mx\" extra\n", "text after the closing quote"},
    {"[server]\nworkers = \"3\" # ok\nloops = 2 two\n", ":3: [server] loops: bad value"},
    {"[listen]\nimap = ::1:143\n", "imap"},
    {"[listen]\nimap = unix:/tmp/x\n", "lmtp only"},
    {"[listen]\nimap = 127.0.0.1:1,,127.0.0.1:2\n", "imap"},
    {"[limits]\nmax_message_size = 5Q\n", "max_message_size"},
    {"[limits]\nidle_timeout = -5\n", "idle_timeout"},
    {"[server]\nlog_syslog = maybe\n", "log_syslog"},
    {"[smtp]\nbare_lf = sometimes\n", "bare_lf"},
    {"[listen]\nlmtp_socket_mode = 0999\n", "lmtp_socket_mode"},
    {"[listen]\nlmtp_socket_mode = 1777\n", "lmtp_socket_mode"},
    {"[listen]\nlmtp_socket_mode = rw\n", "lmtp_socket_mode"},
    {"[acl]\nshared_prefix = Public/Team\n", "[acl] shared_prefix"},
    {"[acl]\nshared_prefix = inbox\n", "[acl] shared_prefix"},
    {"[acl]\nshared_prefix = Other Users\n", "[acl] shared_prefix"},
    {"[acl]\nshared_prefix = Sh%red\n", "[acl] shared_prefix"},
    {"[acl]\nshared_prefix = \"Shared \"\n", "[acl] shared_prefix"},
    {"[acl]\nshared_prefix = \"Sh\\\"d\"\n", "[acl] shared_prefix"},
    {"[acl]\nshared_prefix = "
     "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n",
     "[acl] shared_prefix"},
    {"[server]\ndata_dir = /a/path/much/too/long/for/a/unix/socket/because/sun_path/holds/only/"
     "one/hundred/and/eight/bytes/including/the/terminating/nul\n",
     "[listen] lmtp"},
};

START_TEST(bad_files_are_refused)
{
	const struct bad_case *c = &bad_cases[_i];
	struct roost_config *cfg = NULL;
	char err[256] = "";
	int ret = load(c->text, &cfg, err, sizeof(err));

	check_refused(ret, cfg, err, c, _i);
}
END_TEST

START_TEST(comments_and_quotes)
{
	struct roost_config *cfg = NULL;
	char err[256] = "";

	ck_assert_int_eq(load("[server]\nworkers = 3   # three threads\n"
	                      "data_dir = \"/srv/mail dir\"  # quoted: blanks kept\n"
	                      "hostname = 'mx # 1'\n"
	                      "log_level = debug#not-a-comment\n"
	                      "[relay]\nsmarthost_password = \"p\\\"w#\\\\x\" # escaped\n"
	                      "smarthost_user = \"\"\n"
	                      "[listen]\nimap = 127.0.0.1:143 # loopback\n",
	                      &cfg, err, sizeof(err)),
	                 ROOST_ECONFIG);
	/* "debug#not-a-comment" is one value: not a log level. */
	ck_assert_msg(strstr(err, "log_level") != NULL, "%s", err);
	ck_assert_int_eq(load("[server]\nworkers = 3   # three threads\n"
	                      "data_dir = \"/srv/mail dir\"  # quoted: blanks kept\n"
	                      "hostname = 'mx # 1'\n"
	                      "[relay]\nsmarthost_password = \"p\\\"w#\\\\x\" # escaped\n"
	                      "smarthost_user = \"\"\n"
	                      "smarthost = a#b\n"
	                      "[listen]\nimap = 127.0.0.1:143 # loopback\n",
	                      &cfg, err, sizeof(err)),
	                 0);
	ck_assert_uint_eq(cfg->workers, 3);
	ck_assert_str_eq(cfg->data_dir, "/srv/mail dir");
	ck_assert_str_eq(cfg->hostname, "mx # 1");
	ck_assert_str_eq(cfg->relay_smarthost_password, "p\"w#\\x");
	ck_assert_str_eq(cfg->relay_smarthost_user, "");
	ck_assert_str_eq(cfg->relay_smarthost, "a#b");
	ck_assert_str_eq(cfg->listen_imap.addrs[0], "127.0.0.1:143");
	config_free(&cfg);
}
END_TEST

START_TEST(missing_file_is_an_error)
{
	struct roost_config *cfg = NULL;
	char err[256] = "";

	ck_assert_int_eq(config_load("/nonexistent/roost.conf", &cfg, err, sizeof(err)),
	                 ROOST_ECONFIG);
	ck_assert(strstr(err, "/nonexistent/roost.conf") != NULL);
}
END_TEST

START_TEST(addresses)
{
	struct config_addr a;

	ck_assert_int_eq(config_parse_addr("127.0.0.1:25", &a), 0);
	ck_assert_str_eq(a.host, "127.0.0.1");
	ck_assert_uint_eq(a.port, 25);
	ck_assert_int_eq(config_parse_addr("*:25", &a), 0);
	ck_assert_str_eq(a.host, "");
	ck_assert_int_eq(config_parse_addr("[::1]:993", &a), 0);
	ck_assert_str_eq(a.host, "::1");
	ck_assert_uint_eq(a.port, 993);
	ck_assert_int_eq(config_parse_addr("unix:/run/roost/lmtp", &a), 0);
	ck_assert(a.is_unix);
	ck_assert_str_eq(a.path, "/run/roost/lmtp");
	ck_assert_int_eq(config_parse_addr("unix:relative", &a), ROOST_EINVAL);
	ck_assert_int_eq(config_parse_addr("host:0", &a), ROOST_EINVAL);
	ck_assert_int_eq(config_parse_addr("host:", &a), ROOST_EINVAL);
	ck_assert_int_eq(config_parse_addr("host:12x", &a), ROOST_EINVAL);
	ck_assert_int_eq(config_parse_addr("[::1:25", &a), ROOST_EINVAL);
}
END_TEST

START_TEST(print_round_trips)
{
	struct roost_config *cfg = config_defaults(), *again = NULL;
	char path[] = "/tmp/roost-print-XXXXXX", err[256] = "";
	int fd = mkstemp(path);
	FILE *f = fdopen(fd, "w");

	config_print(cfg, f);
	fclose(f);
	ck_assert_int_eq(config_load(path, &again, err, sizeof(err)), 0);
	ck_assert_str_eq(again->hostname, cfg->hostname);
	ck_assert_uint_eq(again->max_line, cfg->max_line);
	ck_assert_uint_eq(again->expunge_log_retention, cfg->expunge_log_retention);
	ck_assert_str_eq(again->listen_imaps.addrs[0], cfg->listen_imaps.addrs[0]);
	unlink(path);
	config_free(&cfg);
	config_free(&again);
}
END_TEST

struct changes {
	char text[512];
};

static void
note_change(void *arg, const char *name, bool live)
{
	struct changes *ch = arg;
	size_t used = strlen(ch->text);

	snprintf(ch->text + used, sizeof(ch->text) - used, "%s%s:%s", used ? " " : "", name,
	         live ? "live" : "restart");
}

START_TEST(reload_merge_keeps_restart_keys)
{
	struct roost_config *old = NULL, *next = NULL;
	struct changes ch = {""};
	char err[256] = "";

	ck_assert_int_eq(load("[server]\ndata_dir = /tmp/a\nlog_level = info\n"
	                      "[listen]\nimap = 127.0.0.1:1143\n"
	                      "[limits]\nidle_timeout = 60\nmax_line = 8K\n"
	                      "[smtp]\ndomains = a.test\n",
	                      &old, err, sizeof(err)),
	                 0);
	ck_assert_int_eq(load("[server]\ndata_dir = /tmp/b\nlog_level = debug\n"
	                      "[listen]\nimap = 127.0.0.1:1144, [::1]:1144\n"
	                      "[limits]\nidle_timeout = 90\nmax_line = 8K\n"
	                      "[smtp]\ndomains = a.test, b.test\n",
	                      &next, err, sizeof(err)),
	                 0);
	config_reload_merge(old, next, note_change, &ch);
	/* data_dir moves the derived paths (passwd, TLS, dkim) with it. */
	ck_assert_ptr_nonnull(strstr(ch.text, "server.data_dir:restart"));
	ck_assert_ptr_nonnull(strstr(ch.text, "tls.cert:restart"));
	ck_assert_ptr_nonnull(strstr(ch.text, "server.log_level:live"));
	ck_assert_ptr_nonnull(strstr(ch.text, "listen.imap:restart"));
	ck_assert_ptr_nonnull(strstr(ch.text, "limits.idle_timeout:live"));
	ck_assert_ptr_nonnull(strstr(ch.text, "smtp.domains:restart"));
	ck_assert_ptr_null(strstr(ch.text, "max_line"));
	/* Live keys take the new values, the others keep the running ones. */
	ck_assert_str_eq(next->log_level, "debug");
	ck_assert_uint_eq(next->idle_timeout, 90);
	ck_assert_str_eq(next->data_dir, "/tmp/a");
	ck_assert_str_eq(next->tls_cert, old->tls_cert);
	ck_assert_str_eq(next->listen_imap.addrs[0], "127.0.0.1:1143");
	ck_assert_ptr_null(next->listen_imap.addrs[1]);
	ck_assert_str_eq(next->smtp_domains[0], "a.test");
	ck_assert_ptr_null(next->smtp_domains[1]);
	/* Merged again: only what is live differs. */
	ch.text[0] = '\0';
	config_reload_merge(old, next, note_change, &ch);
	ck_assert_ptr_null(strstr(ch.text, "restart"));
	config_free(&old);
	config_free(&next);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("config");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, defaults_are_complete);
	tcase_add_test(tc, file_overrides_defaults);
	tcase_add_loop_test(tc, bad_files_are_refused, 0,
	                    (int)(sizeof(bad_cases) / sizeof(bad_cases[0])));
	tcase_add_test(tc, comments_and_quotes);
	tcase_add_test(tc, missing_file_is_an_error);
	tcase_add_test(tc, addresses);
	tcase_add_test(tc, print_round_trips);
	tcase_add_test(tc, reload_merge_keeps_restart_keys);
	suite_add_tcase(s, tc);
	return check_run(s);
}
