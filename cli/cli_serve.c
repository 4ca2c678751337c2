/*
 * `roost serve`: the start-up sequence. Everything that can fail on a bad
 * configuration or environment (config, storage, users, binding every
 * listener) happens before the first thread starts, so a bad setup never
 * leaves a half-running server: it exits 2 (configuration) or 1 (anything
 * else) with the reason on stderr.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "roost/aliases.h"
#include "roost/auth.h"
#include "roost/cli.h"
#include "roost/config.h"
#include "roost/delivery.h"
#include "roost/error.h"
#include "roost/http.h"
#include "roost/log.h"
#include "roost/outbound.h"
#include "roost/protocols.h"
#include "roost/queue.h"
#include "roost/relay.h"
#include "roost/server.h"
#include "roost/ratelimit.h"
#include "roost/services.h"
#include "roost/storage.h"

static int
reload_tables(void *arg, const struct roost_config *cfg, char *err, size_t errlen)
{
	const struct roost_services *sv = arg;
	int ret = 0;

	ratelimit_set_rates(sv->rate, cfg->smtp_user_messages_per_hour,
	                    cfg->smtp_user_recipients_per_hour);
	char aerr[400];

	if (auth_reload(sv->auth) != 0) {
		snprintf(err, errlen, "passwd file %s does not load (the old users are kept)",
		         auth_file_path(sv->auth));
		ret = ROOST_ECONFIG;
	}
	if (aliases_reload(sv->aliases, aerr, sizeof(aerr)) != 0) {
		size_t used = strlen(err);

		snprintf(err + used, errlen - used, "%saliases: %s (the old aliases are kept)",
		         used > 0 ? "; " : "", aerr);
		ret = ROOST_ECONFIG;
	}
	return ret;
}

/* Bind every enabled listener whose protocol is in this build. */
static int
open_listeners(const struct roost_config *cfg, struct server *srv)
{
	const struct {
		const char *name;
		const struct config_listen *listen;
	} listeners[] = {
	    {"smtp", &cfg->listen_smtp},       {"submission", &cfg->listen_submission},
	    {"smtps", &cfg->listen_smtps},     {"lmtp", &cfg->listen_lmtp},
	    {"imap", &cfg->listen_imap},       {"imaps", &cfg->listen_imaps},
	    {"pop3", &cfg->listen_pop3},       {"pop3s", &cfg->listen_pop3s},
	    {"http", &cfg->listen_http},       {"https", &cfg->listen_https},
	    {"metrics", &cfg->listen_metrics},
	};
	unsigned opened = 0;
	int ret;

	for (size_t i = 0; i < sizeof(listeners) / sizeof(listeners[0]); i++) {
		const struct protocol_binding *b;
		char *const *addrs = listeners[i].listen->addrs;

		if (addrs == NULL || addrs[0] == NULL)
			continue; /* "off" */
		b = protocol_for_listener(listeners[i].name);
		if (b == NULL) {
			log_warn("event=listen listener=%s status=skipped reason=\"protocol not in "
			         "this build\"",
			         listeners[i].name);
			continue;
		}
		ret = server_listen(srv, listeners[i].name, addrs, b->ops, b->implicit_tls);
		if (ret < 0) {
			log_error("event=listen listener=%s status=failed error=\"%s\"",
			          listeners[i].name, roost_strerror(ret));
			return ret;
		}
		opened++;
	}
	if (opened == 0)
		log_warn("event=listen status=none reason=\"no listener enabled\"");
	return 0;
}

/*
 * Descriptors the server keeps besides one per connection: listeners, event
 * loops, storage (LMDB environments, Maildir and notify inotify), logs, the
 * queue, and files the workers open for a moment.
 */
#define NOFILE_RESERVE 256

/* The most RLIMIT_NOFILE may be raised to without privilege: the hard
 * limit, which for "unlimited" is the kernel's fs.nr_open. */
static rlim_t
nofile_ceiling(rlim_t hard)
{
	unsigned long long v = 0;
	FILE *f;

	if (hard != RLIM_INFINITY)
		return hard;
	f = fopen("/proc/sys/fs/nr_open", "re");
	if (f != NULL) {
		if (fscanf(f, "%llu", &v) != 1)
			v = 0;
		fclose(f);
	}
	return v > 0 ? (rlim_t)v : 1048576;
}

/*
 * Every connection holds a descriptor, and the usual soft limit (1024)
 * would refuse connections long before [limits] max_connections: raise it
 * to the hard limit, and say once when even that is too low.
 */
static void
raise_nofile(const struct roost_config *cfg)
{
	struct rlimit rl;
	rlim_t want;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0) {
		log_warn("event=nofile_limit error=\"%s\"", strerror(errno));
		return;
	}
	want = nofile_ceiling(rl.rlim_max);
	if (rl.rlim_cur < want) {
		struct rlimit raised = {want, rl.rlim_max};

		if (setrlimit(RLIMIT_NOFILE, &raised) == 0)
			rl.rlim_cur = want;
		else
			log_warn("event=nofile_limit limit=%llu error=\"%s\"",
			         (unsigned long long)rl.rlim_cur, strerror(errno));
	}
	if (rl.rlim_cur != RLIM_INFINITY &&
	    rl.rlim_cur < (rlim_t)cfg->max_connections + NOFILE_RESERVE)
		log_warn("event=nofile_limit limit=%llu max_connections=%u reachable=%llu "
		         "hint=\"raise the hard limit on open files: LimitNOFILE= in the systemd "
		         "unit, ulimit -Hn, or limits.conf\"",
		         (unsigned long long)rl.rlim_cur, cfg->max_connections,
		         rl.rlim_cur > NOFILE_RESERVE
		             ? (unsigned long long)(rl.rlim_cur - NOFILE_RESERVE)
		             : 0ULL);
}

/* RFC 5321 4.5.1 wants postmaster reachable: say so when it would only be
 * kept under its name (delivery_expand()) with nobody to read it. */
static void
warn_postmaster(const struct roost_services *sv)
{
	char name[DELIVERY_MAX_USER], addr[DELIVERY_MAX_USER];
	const char *domain = sv->cfg->smtp_domains != NULL ? sv->cfg->smtp_domains[0] : NULL;
	char **t;
	size_t n;

	snprintf(addr, sizeof(addr), "postmaster@%s", domain != NULL ? domain : "");
	t = aliases_lookup(sv->aliases, sv->cfg, "postmaster", &n);
	free(t);
	if (t != NULL || auth_lookup(sv->auth, "postmaster", name, sizeof(name)) == 0 ||
	    auth_lookup(sv->auth, addr, name, sizeof(name)) == 0)
		return;
	log_warn("event=start warning=no_postmaster domain=%s hint=\"mail to postmaster "
	         "is kept for postmaster@<domain>: add an alias ([smtp] aliases) or that user\"",
	         LOG_QUOTE(domain != NULL ? domain : "-"));
}

int
cli_serve(struct cli *cli)
{
	struct roost_config *cfg = NULL;
	struct storage *storage = NULL;
	struct auth *auth = NULL;
	struct queue *queue = NULL;
	struct outbound *outbound = NULL;
	struct server *srv = NULL;
	struct aliases *aliases = NULL;
	char errbuf[512];
	const char *bad;
	struct roost_services services = {0};
	enum log_level level;
	int ret, status = CLI_FAIL;

	if (cli->argc != 1)
		return cli_usage(cli);
	if (cli_load_config(cli, &cfg) < 0)
		return CLI_USAGE;
	/* Block the shutdown and reload signals before storage_open() may start
	 * threads: every thread inherits the mask, so these signals reach only
	 * server_run()'s signalfd (one arriving during start-up waits there). */
	{
		sigset_t set;

		sigemptyset(&set);
		sigaddset(&set, SIGTERM);
		sigaddset(&set, SIGINT);
		sigaddset(&set, SIGHUP);
		pthread_sigmask(SIG_BLOCK, &set, NULL);
	}
	if (log_level_parse(cfg->log_level, &level) < 0)
		level = LOG_LEVEL_INFO; /* config_load validated it */
	log_setup(level, true, cfg->log_syslog);
	log_info("event=start version=0.1 config=%s data_dir=%s backend=%s",
	         cfg->path != NULL ? cfg->path : "(defaults)", cfg->data_dir, cfg->storage_backend);
	raise_nofile(cfg);

	if ((ret = storage_open(cfg, &storage)) < 0) {
		log_error("event=start status=failed stage=storage backend=%s error=\"%s\"",
		          cfg->storage_backend, roost_strerror(ret));
		status = ret == ROOST_ECONFIG ? CLI_USAGE : CLI_FAIL;
		goto out;
	}
	if ((ret = auth_open(cfg, &auth)) < 0) {
		log_error("event=start status=failed stage=auth passwd_file=%s error=\"%s\"",
		          cfg->passwd_file, roost_strerror(ret));
		status = ret == ROOST_ECONFIG ? CLI_USAGE : CLI_FAIL;
		goto out;
	}
	storage_set_auth(storage, auth); /* per-user quota limits */
	if (relay_check_config(cfg, &bad) != 0) {
		log_error("event=start status=failed stage=config error=\"[smtp] trusted_networks: "
		          "bad network %s\"",
		          bad);
		status = CLI_USAGE;
		goto out;
	}
	if ((ret = queue_open(cfg, true, &queue)) < 0) {
		log_error("event=start status=failed stage=queue error=\"%s\"",
		          roost_strerror(ret));
		goto out;
	}
	if ((ret = aliases_load(cfg, &aliases, errbuf, sizeof(errbuf))) < 0) {
		log_error("event=start status=failed stage=aliases error=%s", LOG_QUOTE(errbuf));
		status = CLI_USAGE;
		goto out;
	}
	services.cfg = cfg;
	services.storage = storage;
	services.auth = auth;
	services.queue = queue;
	services.aliases = aliases;
	services.rate = ratelimit_create(cfg->smtp_user_messages_per_hour,
	                                 cfg->smtp_user_recipients_per_hour, cfg->smtp_rate_users);
	warn_postmaster(&services);
	if ((ret = jmap_pushd_start(&services, &services.push)) < 0)
		goto out;
	if ((ret = server_create(cfg, &services, &srv)) < 0) {
		log_error("event=start status=failed stage=server error=\"%s\"",
		          roost_strerror(ret));
		status = ret == ROOST_ECONFIG ? CLI_USAGE : CLI_FAIL;
		goto out;
	}
	if ((ret = open_listeners(cfg, srv)) < 0)
		goto out;
	server_set_reload(srv, reload_tables, &services);
	if ((ret = outbound_start(&services, &outbound)) < 0) {
		status = ret == ROOST_ECONFIG ? CLI_USAGE : CLI_FAIL;
		goto out;
	}
	ret = server_run(srv);
	/* The listeners are closed: no new mail reaches the queue. */
	outbound_stop(&outbound);
	status = ret == 0 ? CLI_OK : CLI_FAIL;
	log_info("event=stop status=%s", ret == 0 ? "clean" : roost_strerror(ret));
out:
	server_free(&srv);
	jmap_pushd_stop(&services.push);
	queue_close(&queue);
	aliases_free(&aliases);
	ratelimit_free(&services.rate);
	if (storage != NULL)
		storage_set_auth(storage, NULL); /* auth goes first */
	auth_free(&auth);
	storage_close(&storage);
	config_free(&cfg);
	return status;
}
