#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "roost/config.h"
#include "roost/error.h"
#include "roost/log.h"
#include "roost/server.h"
#include "roost/server_impl.h"
#include "roost/tls.h"
#include "roost/xalloc.h"

/*
 * `roost reload` and SIGHUP: re-read the configuration file, publish what may
 * change at run time, reload TLS and the services' tables.
 *
 * Publication is a pointer swap. The new configuration is built and merged
 * (config_reload_merge() gives the keys that need a restart their running
 * values back) before any thread can see it, then stored with release
 * order; readers load it with acquire order (server_config()), so they see
 * it whole. The configuration it replaces is retired, not freed: a worker
 * may still be in the middle of a step with it, and there is no cheap way to
 * know when the last one is done. Reloads are rare and operator-driven and
 * a configuration is a few KB, so they stay until server_free(). One reload
 * at a time (reload_mu); readers never wait.
 */

const struct roost_config *
server_config(const struct server *s)
{
	return atomic_load_explicit(&((struct server *)s)->live, memory_order_acquire);
}

struct change_list {
	char applied[1024];
	char restart[1024];
};

static void
add_name(char *list, size_t size, const char *name)
{
	size_t used = strlen(list);

	if (used + strlen(name) + 2 >= size)
		return; /* the log line says enough; a summary stays short */
	snprintf(list + used, size - used, "%s%s", used > 0 ? "," : "", name);
}

static void
on_change(void *arg, const char *name, bool live)
{
	struct change_list *ch = arg;

	if (live)
		add_name(ch->applied, sizeof(ch->applied), name);
	else
		add_name(ch->restart, sizeof(ch->restart), name);
}

/* The level and sinks of the log as cfg says. */
static void
apply_log(const struct roost_config *cfg)
{
	enum log_level level;

	if (log_level_parse(cfg->log_level, &level) == 0)
		log_set_level(level, cfg->log_syslog);
}

/* Re-read the file and publish what changed: 0 (summary filled), or
 * ROOST_ECONFIG with the reason in err and nothing changed. */
static int
reload_config(struct server *s, char *summary, size_t summarylen, char *err, size_t errlen)
{
	const struct roost_config *old = server_config(s);
	struct roost_config *next = NULL;
	struct change_list ch = {{0}, {0}};
	char why[512];

	if (old->path == NULL) {
		snprintf(summary, summarylen, "unchanged");
		return 0; /* started with the defaults only: nothing to re-read */
	}
	if (config_load(old->path, &next, why, sizeof(why)) != 0) {
		log_error("event=reload_failed file=config path=%s error=%s keeping=old",
		          LOG_QUOTE(old->path), LOG_QUOTE(why));
		snprintf(err, errlen, "%s (the running configuration is kept)", why);
		return ROOST_ECONFIG;
	}
	config_reload_merge(old, next, on_change, &ch);
	if (ch.applied[0] == '\0') {
		/* Nothing the server applies changed: keep the old pointer. */
		config_free(&next);
	} else {
		struct retired_config *r = xcalloc(1, sizeof(*r));

		atomic_store_explicit(&s->live, next, memory_order_release);
		if (old != s->cfg) {
			r->cfg = (struct roost_config *)old;
			r->next = s->retired;
			s->retired = r;
		} else {
			free(r); /* the caller's: freed by the caller */
		}
		apply_log(next);
	}
	log_info("event=reloaded file=config path=%s applied=%s restart_needed=%s",
	         LOG_QUOTE(old->path), ch.applied[0] != '\0' ? ch.applied : "-",
	         ch.restart[0] != '\0' ? ch.restart : "-");
	if (ch.restart[0] != '\0')
		log_warn("event=reload_restart_needed keys=%s hint=\"these keep their running "
		         "values until roost restarts\"",
		         ch.restart);
	if (ch.applied[0] == '\0' && ch.restart[0] == '\0')
		snprintf(summary, summarylen, "unchanged");
	else
		snprintf(summary, summarylen, "%s%s%s%s%s", ch.applied[0] ? "applied=" : "",
		         ch.applied, ch.applied[0] && ch.restart[0] ? " " : "",
		         ch.restart[0] ? "restart=" : "", ch.restart);
	return 0;
}

int
server_reload(struct server *s, char *summary, size_t summarylen, char *err, size_t errlen)
{
	char herr[512];
	int ret, hret = 0;
	size_t used;

	snprintf(err, errlen, "%s", "");
	snprintf(summary, summarylen, "%s", "");
	pthread_mutex_lock(&s->reload_mu);
	log_info("event=reload");
	ret = reload_config(s, summary, summarylen, err, errlen);
	if (s->tls != NULL)
		(void)tls_reload(s->tls, server_config(s));
	herr[0] = '\0';
	if (s->reload != NULL)
		hret = s->reload(s->reload_arg, server_config(s), herr, sizeof(herr));
	pthread_mutex_unlock(&s->reload_mu);
	if (hret != 0) {
		used = strlen(err);
		snprintf(err + used, errlen - used, "%s%s", used > 0 ? "; " : "", herr);
		if (ret == 0)
			ret = hret;
	}
	return ret;
}

void
server_config_free(struct server *s)
{
	const struct roost_config *live = atomic_load_explicit(&s->live, memory_order_relaxed);

	while (s->retired != NULL) {
		struct retired_config *r = s->retired;

		s->retired = r->next;
		config_free(&r->cfg);
		free(r);
	}
	if (live != s->cfg) {
		struct roost_config *own = (struct roost_config *)live;

		config_free(&own);
	}
	atomic_store_explicit(&s->live, s->cfg, memory_order_relaxed);
}
