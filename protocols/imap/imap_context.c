/*
 * CONTEXT=SEARCH and CONTEXT=SORT (RFC 5267): a UID SEARCH or UID SORT with
 * RETURN (UPDATE) stays alive, and when the view catches up with changes
 * (view_sync(), at NOOP, IDLE or any command's end) the session that asked
 * is told how its result changed: "* ESEARCH (TAG ...) UID REMOVEFROM"
 * and "ADDTO", until CANCELUPDATE or the mailbox is closed.
 *
 * A context keeps a copy of its search keys and runs them again, whole,
 * after each batch of changes, then compares the new result with the one
 * it kept. That costs one search per batch, never more than the command
 * itself cost, and is bounded the same way: at most IMAP_MAX_CONTEXTS per
 * session and [imap] search_budget per run; a context whose run fails is
 * dropped with "* OK [NOUPDATE tag]".
 *
 * Positions: a SEARCH result has no order beyond UIDs, so its positions
 * are 0 as RFC 5267 allows; a SORT context gives the 1-based position in
 * the old list for each removal (highest first) and in the new list for
 * each addition (lowest first), so applying them in order yields the new
 * list.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "roost/config.h"
#include "roost/conn.h"
#include "roost/error.h"
#include "roost/services.h"
#include "roost/uid.h"
#include "roost/xalloc.h"

#include "imap_sort.h"

struct imap_context {
	struct imap_context *next;
	char tag[IMAP_MAX_TAG + 1];
	bool sort;
	struct sort_crit crit[SORT_MAX_CRITERIA];
	size_t n_crit;
	struct arena arena; /* the copied keys */
	struct imap_arg *args;
	size_t n;
	uint32_t *uids; /* last result: sort order, or ascending */
	size_t n_uids;
};

static struct imap_arg *
copy_args(struct arena *a, const struct imap_arg *src, size_t n)
{
	struct imap_arg *d = arena_alloc(a, (n ? n : 1) * sizeof(*d));

	for (size_t i = 0; i < n; i++) {
		d[i] = src[i];
		d[i].fd = -1;
		d[i].raw = NULL;
		if (src[i].str != NULL)
			d[i].str = arena_strndup(a, src[i].str, src[i].len);
		if (src[i].type == ARG_LIST)
			d[i].list = copy_args(a, src[i].list, src[i].n);
	}
	return d;
}

static void
context_free(struct imap_context **cp)
{
	struct imap_context *c = *cp;

	if (c == NULL)
		return;
	arena_free(&c->arena);
	free(c->uids);
	free(c);
	*cp = NULL;
}

void
context_free_all(struct imap_view *v)
{
	while (v->contexts != NULL) {
		struct imap_context *c = v->contexts;
		v->contexts = c->next;
		context_free(&c);
	}
}

static size_t
count(const struct imap_view *v)
{
	size_t n = 0;

	for (const struct imap_context *c = v->contexts; c != NULL; c = c->next)
		n++;
	return n;
}

int
context_add(struct imap_cmd *cmd, const struct imap_arg *keys, size_t n,
            const struct sort_crit *crit, size_t n_crit, const uint32_t *idx, size_t nh)
{
	struct imap_view *v = &cmd->s->view;

	if (count(v) >= IMAP_MAX_CONTEXTS)
		return ROOST_ETOOBIG;
	for (struct imap_context *o = v->contexts; o != NULL; o = o->next)
		if (strcmp(o->tag, cmd->p.tag) == 0)
			return ROOST_EEXISTS;
	struct imap_context *c = xcalloc(1, sizeof(*c));
	snprintf(c->tag, sizeof(c->tag), "%s", cmd->p.tag);
	c->sort = crit != NULL;
	if (crit != NULL)
		memcpy(c->crit, crit, n_crit * sizeof(*crit));
	c->n_crit = n_crit;
	arena_init(&c->arena);
	c->args = copy_args(&c->arena, keys, n);
	c->n = n;
	c->uids = xmalloc((nh ? nh : 1) * sizeof(*c->uids));
	for (size_t i = 0; i < nh; i++)
		c->uids[i] = v->msgs[idx[i]].rec.uid;
	c->n_uids = nh;
	c->next = v->contexts;
	v->contexts = c;
	return 0;
}

int
context_cancel(struct imap_view *v, const char *tag)
{
	for (struct imap_context **cp = &v->contexts; *cp != NULL; cp = &(*cp)->next) {
		if (strcmp((*cp)->tag, tag) == 0) {
			struct imap_context *c = *cp;
			*cp = c->next;
			context_free(&c);
			return 0;
		}
	}
	return ROOST_ENOTFOUND;
}

/* Run c's keys again over the view: the new result as UIDs (heap). */
static int
rerun(struct imap_session *s, struct imap_context *c, uint32_t **uids_r, size_t *n_r)
{
	struct imap_cmd cmd = {.s = s, .c = s->c, .uid = true, .done = true};
	struct imap_search *sr;
	uint64_t budget = s->sv->cfg->imap_search_budget;
	uint32_t *idx;
	size_t nh;
	int rc;

	/* done: the synthetic command never writes a tagged reply */
	cmd.p.tag = c->tag;
	arena_init(&cmd.arena);
	rc = imap_search_parse(&cmd, c->args, c->n, &sr);
	if (rc == 0)
		rc = imap_search_run(&cmd, sr, &budget, &idx, &nh, NULL);
	if (rc == 0 && c->sort) {
		struct sort_cache *sc = sort_cache_sync(&s->view);
		rc = sort_cache_load(&cmd, sc, idx, nh, &budget);
		if (rc == 0)
			sort_indexes(&s->view, sc, idx, nh, c->crit, c->n_crit);
		else
			free(idx);
	}
	arena_free(&cmd.arena);
	if (rc < 0)
		return rc;
	for (size_t i = 0; i < nh; i++)
		idx[i] = s->view.msgs[idx[i]].rec.uid;
	*uids_r = idx;
	*n_r = nh;
	return 0;
}

static void
notify(struct imap_session *s, struct imap_context *c, const uint32_t *nu, size_t nn)
{
	/* membership by UID: sorted copies of both lists */
	uint32_t *a = xmalloc((c->n_uids ? c->n_uids : 1) * sizeof(*a));
	uint32_t *b = xmalloc((nn ? nn : 1) * sizeof(*b));
	struct buf out = BUF_INIT(0);
	bool any = false;

	memcpy(a, c->uids, c->n_uids * sizeof(*a));
	memcpy(b, nu, nn * sizeof(*b));
	uid_sort(a, c->n_uids);
	uid_sort(b, nn);
	buf_printf(&out, "* ESEARCH (TAG \"%s\") UID REMOVEFROM (", c->tag);
	for (size_t i = c->n_uids; i-- > 0;) {
		if (uid_find(b, nn, c->uids[i]))
			continue;
		buf_printf(&out, "%s%zu %u", any ? " " : "", c->sort ? i + 1 : 0, c->uids[i]);
		any = true;
	}
	if (any) {
		buf_append_str(&out, ")\r\n");
		conn_write(s->c, out.data, out.len);
	}
	buf_reset(&out);
	any = false;
	buf_printf(&out, "* ESEARCH (TAG \"%s\") UID ADDTO (", c->tag);
	for (size_t i = 0; i < nn; i++) {
		if (uid_find(a, c->n_uids, nu[i]))
			continue;
		buf_printf(&out, "%s%zu %u", any ? " " : "", c->sort ? i + 1 : 0, nu[i]);
		any = true;
	}
	if (any) {
		buf_append_str(&out, ")\r\n");
		conn_write(s->c, out.data, out.len);
	}
	buf_free(&out);
	free(a);
	free(b);
}

void
context_update(struct imap_session *s)
{
	struct imap_view *v = &s->view;

	for (struct imap_context **cp = &v->contexts; *cp != NULL;) {
		struct imap_context *c = *cp;
		uint32_t *nu;
		size_t nn;
		if (rerun(s, c, &nu, &nn) < 0) {
			imap_untagged(s, "OK [NOUPDATE \"%s\"] Search context dropped", c->tag);
			*cp = c->next;
			context_free(&c);
			continue;
		}
		notify(s, c, nu, nn);
		free(c->uids);
		c->uids = nu;
		c->n_uids = nn;
		cp = &c->next;
	}
}

void
cmd_cancelupdate(struct imap_cmd *cmd)
{
	struct imap_view *v = &cmd->s->view;

	if (cmd->p.n == 0) {
		imap_bad(cmd, "CANCELUPDATE needs a tag");
		return;
	}
	for (size_t i = 0; i < cmd->p.n; i++) {
		if (!imap_arg_is_string(&cmd->p.args[i]) ||
		    context_cancel(v, cmd->p.args[i].str) < 0) {
			imap_bad(cmd, "No such search context");
			return;
		}
	}
	imap_tagged(cmd, "OK", "CANCELUPDATE completed");
}
