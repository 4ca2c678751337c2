/*
 * SEARCH and UID SEARCH with every RFC 3501 key, CHARSET UTF-8/US-ASCII,
 * and ESEARCH (RFC 4731) result options MIN MAX COUNT ALL.
 *
 * Keys become a tree; each message is tested against it, and the message
 * is read and parsed only when a header or body key is reached (at most
 * once per message). Its text is decoded and case-folded at most once per
 * message too, when the first TEXT/BODY key needs it, and every key then
 * runs memmem() (linear in glibc) over that one copy: the needles are folded
 * once per command.
 *
 * The work is bounded per command: at most SEARCH_MAX_KEYS keys, and at
 * most [imap] search_budget bytes scanned by the matcher in all (a key over
 * a message costs the bytes it scans), past which the command answers
 * NO [LIMIT]. Decoding each message once is not charged: it costs what any
 * single-key search costs, and no more keys make it bigger.
 *
 * The keys are parsed in imap_search_key.c and matched in
 * imap_search_match.c; here are the command, its RETURN options and the
 * result line.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "roost/config.h"
#include "roost/conn.h"
#include "roost/date.h"
#include "roost/error.h"
#include "roost/log.h"
#include "roost/message.h"
#include "roost/services.h"
#include "roost/storage.h"
#include "roost/xalloc.h"

#include "imap_impl.h"
#include "imap_sort.h"
#include "imap_search.h"

#define RET_MIN IMAP_RET_MIN
#define RET_MAX IMAP_RET_MAX
#define RET_ALL IMAP_RET_ALL
#define RET_COUNT IMAP_RET_COUNT

int
imap_search_return(struct imap_cmd *cmd, const struct imap_arg *list, unsigned *ret_r,
                   struct imap_partial *partial_r)
{
	static const struct {
		const char *name;
		unsigned bit;
	} opts[] = {{"MIN", IMAP_RET_MIN},         {"MAX", IMAP_RET_MAX},
	            {"ALL", IMAP_RET_ALL},         {"COUNT", IMAP_RET_COUNT},
	            {"SAVE", IMAP_RET_SAVE},       {"UPDATE", IMAP_RET_UPDATE},
	            {"CONTEXT", IMAP_RET_CONTEXT}, {"PARTIAL", IMAP_RET_PARTIAL}};
	unsigned ret = 0;

	if (list->type != ARG_LIST) {
		imap_bad(cmd, "Invalid RETURN options");
		return ROOST_EINVAL;
	}
	for (size_t k = 0; k < list->n; k++) {
		size_t j = 0;
		while (j < sizeof(opts) / sizeof(opts[0]) &&
		       !imap_arg_atom_eq(&list->list[k], opts[j].name))
			j++;
		if (j == sizeof(opts) / sizeof(opts[0])) {
			imap_bad(cmd, "Unknown RETURN option");
			return ROOST_EINVAL;
		}
		if (opts[j].bit == IMAP_RET_PARTIAL) {
			const struct imap_arg *r = k + 1 < list->n ? &list->list[++k] : NULL;
			if ((ret & IMAP_RET_PARTIAL) || r == NULL || r->type != ARG_ATOM ||
			    imap_partial_parse(r->str, partial_r) < 0) {
				imap_bad(cmd, "Invalid PARTIAL range");
				return ROOST_EINVAL;
			}
		}
		ret |= opts[j].bit;
	}
	if ((ret & IMAP_RET_PARTIAL) && (ret & IMAP_RET_ALL)) {
		imap_bad(cmd, "PARTIAL and ALL cannot be used together");
		return ROOST_EINVAL;
	}
	/* CONTEXT is a hint; alone (or with UPDATE alone) it implies nothing */
	if ((ret & ~(unsigned)IMAP_RET_CONTEXT) == 0)
		ret |= IMAP_RET_ALL;
	*ret_r = ret;
	return 0;
}

void
imap_search_save(struct imap_view *v, unsigned ret, const struct imap_partial *partial,
                 const uint32_t *idx, size_t n)
{
	uint32_t *uids = xmalloc((n ? n : 1) * sizeof(*uids));
	size_t k = 0;

	if (ret & IMAP_RET_PARTIAL) {
		/* the messages the PARTIAL window returns */
		size_t from, to;

		imap_partial_slice(partial, n, &from, &to);
		for (size_t i = from; i < to; i++)
			uids[k++] = v->msgs[idx[i]].rec.uid;
	} else if ((ret & (IMAP_RET_ALL | IMAP_RET_COUNT)) == 0 &&
	           (ret & (IMAP_RET_MIN | IMAP_RET_MAX))) {
		/* RFC 5182: with MIN and/or MAX alone, only those are saved */
		if (n > 0 && (ret & IMAP_RET_MIN))
			uids[k++] = v->msgs[idx[0]].rec.uid;
		if (n > 0 && (ret & IMAP_RET_MAX) && !(k == 1 && n == 1))
			uids[k++] = v->msgs[idx[n - 1]].rec.uid;
	} else {
		for (; k < n; k++)
			uids[k] = v->msgs[idx[k]].rec.uid;
	}
	searchres_save(v, uids, k);
	free(uids);
}

/*
 * The result line of a SEARCH, written after the search in pieces: a
 * mailbox of many messages makes a line of hundreds of KiB, so the numbers
 * go out as the client reads them (imap_yield()). The line stays one line:
 * while the command is parked nothing else is written on the connection.
 */
struct search_out {
	uint32_t *hits; /* ascending sequence numbers or UIDs (heap) */
	size_t nh;
	size_t next;   /* first of hits not written yet */
	bool ranges;   /* ESEARCH ALL "1:3,5" rather than SEARCH " 1 2 3 5" */
	char tail[48]; /* written after the last number: the MODSEQ */
};

/* Bytes of numbers formatted before they are handed to the connection. */
#define SEARCH_PIECE 4096

static imap_step_fn search_out_step;

static void
search_out_free(struct imap_cmd *cmd)
{
	struct search_out *o = cmd->state;

	if (o != NULL)
		free(o->hits);
	cmd->state = NULL;
}

static void
search_out_step(struct imap_cmd *cmd)
{
	struct search_out *o = cmd->state;
	struct buf b = BUF_INIT(0);

	while (o->next < o->nh) {
		if (conn_output_full(cmd->c)) {
			imap_yield(cmd, search_out_step);
			buf_free(&b);
			return;
		}
		buf_reset(&b);
		while (o->next < o->nh && b.len < SEARCH_PIECE) {
			size_t i = o->next;
			if (!o->ranges) {
				buf_printf(&b, " %u", o->hits[i]);
				o->next++;
				continue;
			}
			size_t j = i;
			while (j + 1 < o->nh && o->hits[j + 1] == o->hits[j] + 1)
				j++;
			if (i > 0)
				buf_append_byte(&b, ',');
			if (j == i)
				buf_printf(&b, "%u", o->hits[i]);
			else
				buf_printf(&b, "%u:%u", o->hits[i], o->hits[j]);
			o->next = j + 1;
		}
		conn_write(cmd->c, b.data, b.len);
	}
	buf_free(&b);
	conn_printf(cmd->c, "%s\r\n", o->tail);
	search_out_free(cmd);
	imap_tagged(cmd, "OK", "SEARCH completed");
}

/* A SEARCH while its matcher runs (in steps, see imap_progress.c). */
struct search_run {
	struct imap_search_job job;
	unsigned ret;
	struct imap_partial partial;
	bool esearch;
	size_t keys; /* where the keys start in cmd->p.args */
};

static void
search_run_free(struct imap_cmd *cmd)
{
	struct search_run *r = cmd->state;

	if (r != NULL)
		imap_search_job_free(&r->job);
	cmd->state = NULL;
}

/* The matcher is done: SAVE, UPDATE's context and the result line. */
static void
search_finish(struct imap_cmd *cmd, struct search_run *r)
{
	struct imap_session *s = cmd->s;
	struct imap_view *v = &s->view;
	const struct imap_arg *a = cmd->p.args + r->keys;
	size_t n = cmd->p.n - r->keys;
	unsigned ret = r->ret;
	bool esearch = r->esearch;
	struct imap_partial partial = r->partial;
	struct imap_search *sr = r->job.sr;
	uint32_t *hits = r->job.hits;
	size_t nh = r->job.nh;
	uint64_t top = r->job.top;

	r->job.hits = NULL; /* ours now */
	cmd->state = NULL;
	cmd->state_free = NULL;
	if ((ret & IMAP_RET_UPDATE) && (ret & IMAP_RET_PARTIAL))
		/* RFC 5267 lets a server decline a context: updates of a
		 * window (positions shifting as messages come and go) are
		 * not kept */
		imap_untagged(s, "OK [NOUPDATE \"%s\"] No updates of a PARTIAL result", cmd->p.tag);
	else if ((ret & IMAP_RET_UPDATE) && context_add(cmd, a, n, NULL, 0, hits, nh) < 0)
		imap_untagged(s, "OK [NOUPDATE \"%s\"] No more search contexts", cmd->p.tag);
	if (ret & IMAP_RET_SAVE) {
		imap_search_save(v, ret, &partial, hits, nh);
		ret &= ~(unsigned)IMAP_RET_SAVE;
		if (ret == 0) { /* SAVE alone: no ESEARCH response */
			free(hits);
			imap_tagged(cmd, "OK", "SEARCH completed, result saved");
			return;
		}
	}
	/* the messages ESEARCH MIN and MAX return (hits are view indexes here) */
	uint64_t first_ms = nh > 0 ? v->msgs[hits[0]].rec.modseq : 0;
	uint64_t last_ms = nh > 0 ? v->msgs[hits[nh - 1]].rec.modseq : 0;
	for (size_t k = 0; k < nh; k++)
		hits[k] = cmd->uid ? v->msgs[hits[k]].rec.uid : hits[k] + 1;
	bool modseq = imap_search_modseq(sr);
	struct search_out *o = arena_alloc(&cmd->arena, sizeof(*o));
	o->hits = hits;
	o->nh = nh;
	cmd->state = o;
	cmd->state_free = search_out_free;
	struct buf b = BUF_INIT(0);
	buf_append_str(&b, "* ");
	if (esearch) {
		buf_printf(&b, "ESEARCH (TAG \"%s\")%s", cmd->p.tag, cmd->uid ? " UID" : "");
		if (nh > 0 && (ret & RET_MIN))
			buf_printf(&b, " MIN %u", hits[0]);
		if (nh > 0 && (ret & RET_MAX))
			buf_printf(&b, " MAX %u", hits[nh - 1]);
		if (ret & RET_COUNT)
			buf_printf(&b, " COUNT %zu", nh);
		if (ret & IMAP_RET_PARTIAL)
			imap_partial_format(&b, &partial, hits, nh);
		if (nh > 0 && (ret & RET_ALL)) {
			buf_append_str(&b, " ALL ");
			o->ranges = true;
		} else {
			o->next = nh; /* no numbers: only the tail */
		}
		/* RFC 7162 3.1.5: with only MIN and/or MAX, the MODSEQ is of
		 * the messages returned, not of every match. */
		if ((ret & (RET_ALL | RET_COUNT)) == 0) {
			top = 0;
			if (ret & RET_MIN)
				top = first_ms;
			if ((ret & RET_MAX) && last_ms > top)
				top = last_ms;
		}
		if (nh > 0 && modseq)
			snprintf(o->tail, sizeof(o->tail), " MODSEQ %llu", (unsigned long long)top);
	} else {
		buf_append_str(&b, "SEARCH");
		if (nh > 0 && modseq)
			snprintf(o->tail, sizeof(o->tail), " (MODSEQ %llu)",
			         (unsigned long long)top);
	}
	conn_write(s->c, b.data, b.len);
	buf_free(&b);
	search_out_step(cmd);
}

static imap_step_fn search_run_step;

/* One interval of matching; then INPROGRESS and a later step, or the end. */
static void
search_run_step(struct imap_cmd *cmd)
{
	struct search_run *r = cmd->state;
	int rc = imap_search_job_run(cmd, &r->job, imap_progress_deadline(cmd->s));

	if (rc == 0) {
		imap_progress_send(cmd, r->job.next, cmd->s->view.n, "Searching");
		imap_yield(cmd, search_run_step);
		return;
	}
	if (rc < 0) {
		if (r->ret & IMAP_RET_SAVE) /* RFC 5182: a failed SAVE leaves $ empty */
			searchres_clear(&cmd->s->view);
		search_run_free(cmd);
		cmd->state_free = NULL;
		return;
	}
	search_finish(cmd, r);
}

void
cmd_search(struct imap_cmd *cmd)
{
	struct imap_session *s = cmd->s;
	struct imap_view *v = &s->view;
	const struct imap_arg *a = cmd->p.args;
	size_t n = cmd->p.n, i = 0;
	unsigned ret = 0;
	bool esearch = false;

	struct imap_partial partial = {0, 0, false};
	if (i < n && imap_arg_atom_eq(&a[i], "RETURN")) {
		if (i + 1 >= n) {
			imap_bad(cmd, "Invalid RETURN options");
			return;
		}
		if (imap_search_return(cmd, &a[i + 1], &ret, &partial) < 0)
			return;
		esearch = true;
		i += 2;
	}
	if (!esearch && s->rev2) {
		/* RFC 9051 6.4.4: no SEARCH response; ESEARCH ALL instead. */
		esearch = true;
		ret = IMAP_RET_ALL;
	}
	if ((ret & IMAP_RET_UPDATE) && !cmd->uid) {
		imap_bad(cmd, "UPDATE needs UID SEARCH");
		return;
	}
	if (i < n && imap_arg_atom_eq(&a[i], "CHARSET")) {
		if (i + 1 >= n) {
			imap_bad(cmd, "Missing charset");
			return;
		}
		if (imap_sort_charset(cmd, &a[i + 1]) < 0)
			return;
		i += 2;
	}
	struct imap_search *sr;
	if (imap_search_parse(cmd, a + i, n - i, &sr) < 0) {
		if (ret & IMAP_RET_SAVE) /* RFC 5182: a failed SAVE leaves $ empty */
			searchres_clear(v);
		return;
	}
	struct search_run *r = arena_alloc(&cmd->arena, sizeof(*r));
	imap_search_job_init(cmd, &r->job, sr, s->sv->cfg->imap_search_budget);
	r->ret = ret;
	r->partial = partial;
	r->esearch = esearch;
	r->keys = i;
	cmd->state = r;
	cmd->state_free = search_run_free;
	search_run_step(cmd);
}
