#ifndef ROOST_CHECK_CONFIG_UTIL_H
#define ROOST_CHECK_CONFIG_UTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <check.h>

#include "roost/config.h"
#include "roost/error.h"
#include "roost/xalloc.h"

/*
 * Helpers shared by the suites that read configuration files: check_config
 * (roost.conf), check_aliases (the aliases file) and check_relay.
 */

/*
 * Write text to a new file made from tmpl (a mkstemp() pattern, "...XXXXXX"),
 * whose name is left in path (size bytes). The caller unlinks path.
 */
static inline void
temp_file_write(char *path, size_t size, const char *tmpl, const char *text)
{
	size_t len = strlen(text);
	int fd;

	snprintf(path, size, "%s", tmpl);
	fd = mkstemp(path);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, text, len), (ssize_t)len);
	close(fd);
}

/* The defaults, with the local domains example.org and example.net. */
static inline struct roost_config *
config_two_domains(void)
{
	struct roost_config *cfg = config_defaults();

	for (char **p = cfg->smtp_domains; *p != NULL; p++)
		free(*p);
	free(cfg->smtp_domains);
	cfg->smtp_domains = xcalloc(3, sizeof(char *));
	cfg->smtp_domains[0] = xstrdup("example.org");
	cfg->smtp_domains[1] = xstrdup("example.net");
	return cfg;
}

/* A file a loader must refuse, and words its error must contain. */
struct bad_case {
	const char *text;
	const char *must_mention;
};

/*
 * Assert that loading case i (c) was refused: ret is ROOST_ECONFIG, made (what
 * the loader handed back) is NULL, and err mentions c->must_mention.
 */
static inline void
check_refused(int ret, const void *made, const char *err, const struct bad_case *c, int i)
{
	ck_assert_int_eq(ret, ROOST_ECONFIG);
	ck_assert_ptr_null(made);
	ck_assert_msg(strstr(err, c->must_mention) != NULL, "case %d: \"%s\" lacks \"%s\"", i, err,
	              c->must_mention);
}

#endif
