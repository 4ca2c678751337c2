/*
 * libFuzzer target for the IMAP syntax that sees client bytes: the framer
 * (fed in pieces as the loop reads them, spooling large APPEND literals to
 * a temporary directory, switched to bare lines after AUTHENTICATE and IDLE
 * as the session does), the argument parser on each framed command (from
 * the input or from its spool), and what the commands feed their arguments
 * to: sequence sets, dates and LIST patterns (checked against the
 * backtracking definition on short inputs). The first two input bytes pick
 * the piece size, the line bound, the spool threshold and whether the
 * session is logged in.
 *
 * What must hold: the framer never hands out more than it was given nor an
 * empty command, and never leaves the input past its bound (the loop would
 * close the connection: the framer must refuse first); a parsed argument's
 * bytes lie inside the command or its spool file, and its string has its
 * length; a pattern matches exactly when the definition says so.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "roost/buf.h"

#include "../../protocols/imap/imap_impl.h"

#include "../common/feed.h"
#include "../common/imap_match_ref.h"
#include "fuzz_target.h"

static char spool_dir[64];

struct out {
	size_t raised;
};

static void
fz_write(void *arg, const char *text)
{
	(void)arg;
	if (strlen(text) < 3 || memcmp(text + strlen(text) - 2, "\r\n", 2) != 0)
		abort();
}

static void
fz_raise(void *arg, size_t max)
{
	struct out *o = arg;

	o->raised = max;
}

static void
check_pattern(const char *pat, size_t len, const char *const *names, size_t n_names)
{
	struct arena a;
	struct imap_match *m;

	arena_init(&a);
	if (imap_match_compile(&a, pat, len, &m) != 0) {
		if (len <= IMAP_MAX_PATTERN)
			abort();
		arena_free(&a);
		return;
	}
	for (size_t i = 0; i < n_names; i++) {
		bool got = imap_match(m, names[i]);
		/* INBOX folds case: the definition does not */
		bool inbox = strncmp(names[i], "INBOX", 5) == 0;

		if (len <= 12 && strlen(names[i]) <= 16 && !inbox &&
		    got != imap_match_ref(pat, names[i]))
			abort();
	}
	arena_free(&a);
}

static void
check_string(const char *s)
{
	struct arena a;
	struct seqset set;
	int64_t t;
	int y, m, d;

	arena_init(&a);
	if (seqset_parse(&a, s, &set) == 0) {
		seqset_resolve(&set, 1000);
		for (size_t i = 0; i < set.n; i++) {
			if (set.r[i].lo > set.r[i].hi || (i > 0 && set.r[i].lo <= set.r[i - 1].hi))
				abort();
			if (!seqset_contains(&set, set.r[i].lo) ||
			    !seqset_contains(&set, set.r[i].hi))
				abort();
		}
	}
	arena_free(&a);
	(void)imap_parse_datetime(s, &t);
	(void)imap_parse_date(s, &y, &m, &d);
}

static void
check_args(const struct imap_arg *args, size_t n, const uint8_t *data, size_t len,
           const char **names, size_t *n_names)
{
	for (size_t i = 0; i < n; i++) {
		const struct imap_arg *g = &args[i];

		if (g->type == ARG_LIST) {
			check_args(g->list, g->n, data, len, names, n_names);
			continue;
		}
		if (g->type == ARG_LITERAL && g->fd >= 0) {
			struct stat sb;

			if (g->raw != NULL || fstat(g->fd, &sb) < 0 ||
			    (uint64_t)sb.st_size != g->len)
				abort();
			continue;
		}
		/* (a spooled command's text is the spool's: data is NULL) */
		if (g->type == ARG_LITERAL && data != NULL &&
		    (g->raw < data || g->len > len || g->raw > data + len - g->len))
			abort();
		if (g->str == NULL) {
			if (g->type != ARG_LITERAL)
				abort();
			continue;
		}
		if (strlen(g->str) != g->len)
			abort();
		check_string(g->str);
		if (*n_names < 8)
			names[(*n_names)++] = g->str;
	}
}

static void
check_command(const uint8_t *data, size_t len, struct imap_spool *sp, bool *line_mode)
{
	struct arena a;
	struct imap_parsed p;
	const char *err;
	const char *names[8] = {"INBOX", "a/b", "Sent"};
	size_t n_names = 3;

	arena_init(&a);
	a.max = 16 * 1024;
	int rc = sp != NULL ? imap_parse_spooled(&a, sp, &p, &err)
	                    : imap_parse_command(&a, data, len, &p, &err);
	if (rc != 0) {
		if (err == NULL || a.used > a.max)
			abort();
		arena_free(&a);
		return;
	}
	if (p.tag == NULL || p.name == NULL || a.used > a.max)
		abort();
	check_args(p.args, p.n, sp != NULL ? NULL : data, len, names, &n_names);
	for (size_t i = 0; i < n_names; i++)
		check_pattern(names[i], strlen(names[i]), names, n_names);
	*line_mode = strcmp(p.name, "AUTHENTICATE") == 0 || strcmp(p.name, "IDLE") == 0;
	arena_free(&a);
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	snprintf(spool_dir, sizeof(spool_dir), "/tmp/fuzz-imap-XXXXXX");
	if (mkdtemp(spool_dir) == NULL)
		abort();
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct imap_framer fr;
	struct out o = {0};
	struct buf q = BUF_INIT(0);
	size_t fed = 0, step, max_line;
	uint64_t spool_at;
	bool authed, line_mode = false;

	if (size < 2)
		return 0;
	step = (data[0] & 0x20) ? SIZE_MAX : 1 + (data[0] & 0x1f);
	max_line = 32 + (size_t)(data[1] & 0x3f) * 8;
	spool_at = (data[1] & 0x40) ? 16 + (uint64_t)(data[0] >> 6) * 24 : 0;
	authed = data[1] & 0x80;
	data += 2;
	size -= 2;
	imap_framer_init(&fr);
	while (fed < size) {
		size_t cap = (o.raised > max_line ? o.raised : max_line) + 1;

		feed_piece(&q, data, size, &fed, step, cap);
		for (;;) {
			struct imap_frame_env env = {
			    .max_line = max_line,
			    .max_literal = 4096,
			    .authenticated = authed,
			    .mode = line_mode ? FRAMER_LINE : FRAMER_COMMAND,
			    .spool_dir = spool_at ? spool_dir : NULL,
			    .spool_at = spool_at,
			    .write = fz_write,
			    .raise_input = fz_raise,
			    .arg = &o,
			};
			size_t used = 0;
			enum imap_frame_res r = imap_framer_run(&fr, &env, q.data, q.len, &used);

			if (r == IMAP_FRAME_AGAIN) {
				cap = (o.raised > max_line ? o.raised : max_line) + 1;
				if (q.len >= cap)
					abort(); /* the loop would close: input_overflow */
				break;
			}
			if (used == 0 || used > q.len)
				abort();
			if (r == IMAP_FRAME_COMMAND) {
				struct imap_spool *sp = imap_framer_take_spool(&fr);

				if (line_mode)
					line_mode = false;
				else
					check_command(q.data, used, sp, &line_mode);
				imap_spool_free(&sp);
				/* the loop lowers a raised bound after a command */
				o.raised = 0;
			}
			buf_consume(&q, used);
		}
	}
	imap_framer_reset(&fr);
	buf_free(&q);
	return 0;
}
