/*
 * The SEARCH matcher: each message of the view tested against the key
 * tree, its content loaded, decoded and folded at most once, every byte
 * scanned charged to the command's search_budget.
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
#include "roost/loop.h"
#include "roost/message.h"
#include "roost/services.h"
#include "roost/storage.h"
#include "roost/xalloc.h"

#include "imap_impl.h"
#include "imap_sort.h"
#include "imap_search.h"

/* The matcher's allowance for one command, in bytes scanned. */
struct sbudget {
	uint64_t left;
	bool exceeded;
};

/* Per-message lazily loaded content, each part made at most once. */
struct sctx {
	struct imap_session *s;
	struct imap_view *v;
	size_t idx;
	struct sbudget *budget;
	bool loaded, failed;
	struct msg_view mv;
	struct message *msg;
	bool have_day, have_head, have_body;
	int64_t sent_day;
	struct buf head; /* top-level header, encoded words decoded, folded (TEXT) */
	struct buf body; /* every text part decoded, folded (BODY, TEXT) */
};

static bool
load(struct sctx *x)
{
	if (x->loaded)
		return !x->failed;
	x->loaded = true;
	if (mailbox_read(x->v->mb, x->v->msgs[x->idx].rec.uid, &x->mv) < 0) {
		x->failed = true;
		return false;
	}
	const struct roost_config *cfg = x->s->sv->cfg;
	struct message_limits lim = {cfg->mime_max_depth, cfg->mime_max_parts, cfg->max_header_size,
	                             cfg->max_header_fields};
	if (message_parse(x->mv.data, x->mv.len, &lim, &x->msg) < 0) {
		msg_view_release(&x->mv);
		x->failed = true;
		return false;
	}
	return true;
}

static void
unload(struct sctx *x)
{
	if (x->loaded && !x->failed) {
		message_free(&x->msg);
		msg_view_release(&x->mv);
	}
	x->loaded = x->failed = false;
	x->have_day = x->have_head = x->have_body = false;
	buf_free(&x->head);
	buf_free(&x->body);
}

/* Take n bytes of scanning from the command's allowance; false (and the
 * command answers NO [LIMIT]) when it does not have them. */
static bool
charge(struct sctx *x, uint64_t n)
{
	if (x->budget->exceeded || n > x->budget->left) {
		x->budget->exceeded = true;
		return false;
	}
	x->budget->left -= n;
	return true;
}

/* Does the folded text hold the folded needle of k? */
static bool
scan(struct sctx *x, const struct buf *text, const struct skey *k)
{
	if (k->val_len == 0)
		return true;
	if (!charge(x, text->len))
		return false;
	return text->len > 0 && memmem(text->data, text->len, k->val, k->val_len) != NULL;
}

static const struct buf *
head_text(struct sctx *x)
{
	if (!x->have_head) {
		const struct message_part *root = message_root(x->msg);
		struct buf b = BUF_INIT(0);

		message_decode_words((const char *)x->mv.data + root->header_off, root->header_len,
		                     &b);
		message_text_fold(buf_cstr(&b), b.len, &x->head);
		buf_free(&b);
		x->have_head = true;
	}
	return &x->head;
}

static const struct buf *
body_text(struct sctx *x)
{
	if (!x->have_body) {
		struct buf b = BUF_INIT(0);

		if (message_body_text(x->msg, &b) == 0)
			message_text_fold(buf_cstr(&b), b.len, &x->body);
		buf_free(&b);
		x->have_body = true;
	}
	return &x->body;
}

static int
keyword_index(const struct imap_view *v, const char *kw)
{
	for (size_t i = 0; i < v->n_keywords && i < 64; i++)
		if (strcasecmp(v->keywords[i], kw) == 0)
			return (int)i;
	return -1;
}

static bool
sent_day(struct sctx *x, int64_t *day_r)
{
	struct buf b = BUF_INIT(0);
	int64_t t;
	int zone;

	if (!load(x))
		return false;
	if (!x->have_day) {
		/* RFC 3501 6.4.4: the date of the Date: header "disregarding
		 * time and timezone", so the day as its writer wrote it, not
		 * that instant's day in UTC. */
		if (message_header_get(x->msg, NULL, "Date", false, &b) == 0 &&
		    message_parse_date_zone(buf_cstr(&b), b.len, &t, &zone) == 0)
			x->sent_day = search_day_of(t + (int64_t)zone * 60);
		else /* RFC 3501: no usable Date: use the internal date. */
			x->sent_day = search_day_of(x->v->msgs[x->idx].rec.internal_date);
		buf_free(&b);
		x->have_day = true;
	}
	*day_r = x->sent_day;
	return true;
}

/* The save date SAVEDBEFORE/ON/SINCE compare: a message stored before
 * save dates were kept (FETCH SAVEDATE NIL) is taken at its internal date,
 * as RFC 8514 asks where the save date is not known. */
static int64_t
save_date(const struct view_msg *m)
{
	return m->rec.save_date != 0 ? m->rec.save_date : m->rec.internal_date;
}

static bool
match(struct sctx *x, const struct skey *k)
{
	const struct view_msg *m = &x->v->msgs[x->idx];
	int64_t d;

	switch (k->kind) {
	case K_ALL:
		return true;
	case K_AND:
		for (size_t i = 0; i < k->n; i++)
			if (!match(x, k->sub[i]))
				return false;
		return true;
	case K_OR:
		return match(x, k->sub[0]) || match(x, k->sub[1]);
	case K_NOT:
		return !match(x, k->sub[0]);
	case K_FLAG:
		return (m->rec.flags & k->flag) != 0;
	case K_UNFLAG:
		return (m->rec.flags & k->flag) == 0;
	case K_KEYWORD:
	case K_UNKEYWORD: {
		int i = keyword_index(x->v, k->str);
		bool has = i >= 0 && (m->rec.keywords & ((uint64_t)1 << i));
		return k->kind == K_KEYWORD ? has : !has;
	}
	case K_NEW:
		return m->recent && !(m->rec.flags & MSG_SEEN);
	case K_OLD:
		return !m->recent;
	case K_RECENT:
		return m->recent;
	case K_BEFORE:
		return search_day_of(m->rec.internal_date) < k->day;
	case K_ON:
		return search_day_of(m->rec.internal_date) == k->day;
	case K_SINCE:
		return search_day_of(m->rec.internal_date) >= k->day;
	case K_SAVEDBEFORE:
		return search_day_of(save_date(m)) < k->day;
	case K_SAVEDON:
		return search_day_of(save_date(m)) == k->day;
	case K_SAVEDSINCE:
		return search_day_of(save_date(m)) >= k->day;
	case K_SAVEDATESUPPORTED:
		/* RFC 8514: all messages of a mailbox that keeps save dates,
		 * and every backend keeps them for every mailbox */
		return true;
	case K_SENTBEFORE:
		return sent_day(x, &d) && d < k->day;
	case K_SENTON:
		return sent_day(x, &d) && d == k->day;
	case K_SENTSINCE:
		return sent_day(x, &d) && d >= k->day;
	case K_LARGER:
		return m->rec.size > k->size;
	case K_SMALLER:
		return m->rec.size < k->size;
	case K_MODSEQ:
		return m->rec.modseq >= k->size;
	case K_SAVED:
		return searchres_contains(x->v, m->rec.uid);
	case K_OLDER:
		return m->rec.internal_date <= k->time;
	case K_YOUNGER:
		return m->rec.internal_date > k->time;
	case K_EMAILID:
		return k->size != 0 && m->rec.emailid == k->size;
	case K_THREADID:
		/* The thread is named in the header: walking it is the cost. */
		if (k->size == 0 || !load(x) || !charge(x, message_root(x->msg)->header_len))
			return false;
		return imap_threadid(&m->rec, x->mv.data, x->mv.len) == k->size;
	case K_UID:
		return seqset_contains(&k->set, m->rec.uid);
	case K_SEQ:
		return seqset_contains(&k->set, (uint32_t)x->idx + 1);
	case K_HEADER: {
		struct buf b = BUF_INIT(0), f = BUF_INIT(0);
		bool r = false;
		/* Finding the field walks the header block: that is the cost. */
		if (!load(x) || !charge(x, message_root(x->msg)->header_len))
			return false;
		if (message_header_get_all(x->msg, NULL, k->str, true, &b) == 0) {
			message_text_fold(buf_cstr(&b), b.len, &f);
			r = scan(x, &f, k);
		}
		buf_free(&f);
		buf_free(&b);
		return r;
	}
	case K_ADDRESS: {
		/* RFC 3501: the string in "the envelope structure's FROM
		 * field", so comments and quoting are not in the way of an
		 * address written "<a (x)@ (y) b.org>". */
		struct buf b = BUF_INIT(0), f = BUF_INIT(0);
		bool r = false;
		if (!load(x) || !charge(x, message_root(x->msg)->header_len))
			return false;
		if (message_header_addresses(x->msg, NULL, k->str, &b) == 0) {
			message_text_fold(buf_cstr(&b), b.len, &f);
			r = scan(x, &f, k);
		}
		buf_free(&f);
		buf_free(&b);
		return r;
	}
	case K_BODY:
		return load(x) && scan(x, body_text(x), k);
	case K_TEXT:
		if (!load(x))
			return false;
		return scan(x, head_text(x), k) || scan(x, body_text(x), k);
	}
	return false;
}

void
imap_search_limit(struct imap_cmd *cmd, size_t n_keys)
{
	conn_log(cmd->s->c, LOG_LEVEL_INFO, "event=search_limit keys=%zu budget=%llu", n_keys,
	         (unsigned long long)cmd->s->sv->cfg->imap_search_budget);
	imap_tagged(cmd, "NO",
	            "[LIMIT] Search needs more work than allowed "
	            "(search_budget); narrow it");
}

void
imap_search_job_init(struct imap_cmd *cmd, struct imap_search_job *j, struct imap_search *sr,
                     uint64_t budget)
{
	struct imap_view *v = &cmd->s->view;

	search_resolve_sets(sr->root, v);
	memset(j, 0, sizeof(*j));
	j->sr = sr;
	j->budget = budget;
	j->hits = xcalloc(v->n ? v->n : 1, sizeof(*j->hits));
}

void
imap_search_job_free(struct imap_search_job *j)
{
	free(j->hits);
	j->hits = NULL;
}

int
imap_search_job_run(struct imap_cmd *cmd, struct imap_search_job *j, uint64_t deadline_ms)
{
	struct imap_session *s = cmd->s;
	struct imap_view *v = &s->view;
	struct sbudget bg = {j->budget, false};
	const size_t first = j->next;

	for (; j->next < v->n && !bg.exceeded; j->next++) {
		size_t m = j->next;

		/* the clock is read every 16 messages: cheap (vDSO) but not
		 * free, and a message takes microseconds at least. Never
		 * before this step's first message: a step that began late
		 * (a slow machine, a short interval) would otherwise match
		 * nothing, report the same progress again and could repeat
		 * so without end. */
		if (deadline_ms != UINT64_MAX && (m & 15) == 0 && m > first &&
		    clock_ms() >= deadline_ms)
			break;
		if (v->msgs[m].expunged)
			continue;
		struct sctx x = {.s = s,
		                 .v = v,
		                 .idx = m,
		                 .budget = &bg,
		                 .head = BUF_INIT(0),
		                 .body = BUF_INIT(0)};
		if (match(&x, j->sr->root)) {
			j->hits[j->nh++] = (uint32_t)m;
			if (v->msgs[m].rec.modseq > j->top)
				j->top = v->msgs[m].rec.modseq;
		}
		unload(&x);
	}
	j->budget = bg.left;
	if (bg.exceeded) {
		imap_search_job_free(j);
		imap_search_limit(cmd, j->sr->n_keys);
		return ROOST_ETOOBIG;
	}
	return j->next >= v->n ? 1 : 0;
}

int
imap_search_run(struct imap_cmd *cmd, struct imap_search *sr, uint64_t *budget, uint32_t **idx_r,
                size_t *n_r, uint64_t *top_r)
{
	struct imap_search_job j;
	int rc;

	imap_search_job_init(cmd, &j, sr, *budget);
	if ((rc = imap_search_job_run(cmd, &j, UINT64_MAX)) < 0)
		return rc;
	*budget = j.budget;
	*idx_r = j.hits;
	*n_r = j.nh;
	if (top_r != NULL)
		*top_r = j.top;
	return 0;
}
