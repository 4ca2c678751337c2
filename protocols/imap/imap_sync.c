/*
 * The session's view of its selected mailbox and how it catches up.
 *
 * The view is a snapshot of the mailbox's records (sequence number =
 * index + 1) plus the MODSEQ it reflects. view_sync() asks storage what
 * changed since then and announces it: new messages as EXISTS (+ RECENT),
 * flag changes as FETCH FLAGS, and expunges as EXPUNGE, but only where RFC
 * 3501 7.4.1 allows; otherwise expunged messages stay in the view, marked,
 * so sequence numbers the client knows keep their meaning.
 */
#include <stdlib.h>
#include <string.h>

#include "roost/conn.h"
#include "roost/error.h"
#include "roost/log.h"
#include "roost/services.h"
#include "roost/storage.h"
#include "roost/uid.h"
#include "roost/xalloc.h"

#include "imap_impl.h"
#include "imap_sort.h"

static const char *const sys_flags[] = {"\\Seen", "\\Answered", "\\Flagged", "\\Deleted",
                                        "\\Draft"};

void
view_format_flags(const struct imap_view *v, const struct view_msg *m, struct buf *out)
{
	bool first = true;

	buf_append_byte(out, '(');
	for (unsigned i = 0; i < 5; i++) {
		if (m->rec.flags & (1u << i)) {
			if (!first)
				buf_append_byte(out, ' ');
			buf_append_str(out, sys_flags[i]);
			first = false;
		}
	}
	for (size_t i = 0; i < v->n_keywords && i < 64; i++) {
		if (m->rec.keywords & ((uint64_t)1 << i)) {
			if (!first)
				buf_append_byte(out, ' ');
			buf_append_str(out, v->keywords[i]);
			first = false;
		}
	}
	if (m->recent && !v->no_recent) {
		if (!first)
			buf_append_byte(out, ' ');
		buf_append_str(out, "\\Recent");
	}
	buf_append_byte(out, ')');
}

static void
free_keywords(struct imap_view *v)
{
	for (size_t i = 0; i < v->n_keywords; i++)
		free(v->keywords[i]);
	free(v->keywords);
	v->keywords = NULL;
	v->n_keywords = 0;
}

void
view_announce_flags(struct imap_session *s)
{
	struct imap_view *v = &s->view;
	struct buf b = BUF_INIT(0);

	buf_append_str(&b, "\\Answered \\Flagged \\Deleted \\Seen \\Draft");
	for (size_t i = 0; i < v->n_keywords; i++)
		buf_printf(&b, " %s", v->keywords[i]);
	imap_untagged(s, "FLAGS (%s)", buf_cstr(&b));
	/* another's mailbox: what the user's rights let it store (RFC 4314
	 * 4: \\Seen needs s, \\Deleted t, the other flags and keywords w) */
	unsigned rights = mailbox_rights(v->mb);
	struct buf p = BUF_INIT(0);
	const char *sp = "";
	if ((rights & ACL_WRITE) != 0) {
		buf_append_str(&p, "\\Answered \\Flagged");
		sp = " ";
	}
	if ((rights & ACL_DELETED) != 0) {
		buf_printf(&p, "%s\\Deleted", sp);
		sp = " ";
	}
	if ((rights & ACL_SEEN) != 0) {
		buf_printf(&p, "%s\\Seen", sp);
		sp = " ";
	}
	if ((rights & ACL_WRITE) != 0) {
		buf_printf(&p, "%s\\Draft", sp);
		for (size_t i = 0; i < v->n_keywords; i++)
			buf_printf(&p, " %s", v->keywords[i]);
		if (v->n_keywords < STORAGE_MAX_KEYWORDS)
			buf_append_str(&p, " \\*");
	}
	if (v->readonly)
		imap_untagged(s, "OK [PERMANENTFLAGS ()] Read-only mailbox");
	else
		imap_untagged(s, "OK [PERMANENTFLAGS (%s)] Flags permitted", buf_cstr(&p));
	buf_free(&p);
	buf_free(&b);
}

void
view_refresh_keywords(struct imap_session *s, bool announce)
{
	struct imap_view *v = &s->view;
	const char *const *names;
	size_t n;

	if (mailbox_keywords(v->mb, &names, &n) < 0)
		return;
	bool same = n == v->n_keywords;
	for (size_t i = 0; same && i < n; i++)
		same = strcmp(names[i], v->keywords[i]) == 0;
	if (same)
		return;
	free_keywords(v);
	v->keywords = xcalloc(n ? n : 1, sizeof(char *));
	for (size_t i = 0; i < n; i++)
		v->keywords[i] = xstrdup(names[i]);
	v->n_keywords = n;
	if (announce)
		view_announce_flags(s);
}

static void
view_push(struct imap_view *v, const struct msg_record *r, bool recent)
{
	if (v->n == v->cap) {
		v->cap = v->cap ? v->cap * 2 : 64;
		v->msgs = xreallocarray(v->msgs, v->cap, sizeof(*v->msgs));
	}
	v->msgs[v->n].rec = *r;
	v->msgs[v->n].recent = recent;
	v->msgs[v->n].expunged = false;
	v->n++;
	v->n_recent += recent;
}

/*
 * Claim \Recent: this session's messages are exactly [*first_r, *next_r),
 * the range storage moved its boundary over in one step. Nothing at or
 * above *next_r is ours, even if the view sees it already: a message that
 * arrived after the claim belongs to the next claim, maybe another
 * session's. The range is remembered for messages not in the view yet.
 */
static int
claim_recent(struct imap_view *v, uint32_t *first_r, uint32_t *next_r)
{
	int rc = mailbox_claim_recent(v->mb, first_r, next_r);

	if (rc < 0) {
		*first_r = *next_r = 0;
		return rc;
	}
	if (v->readonly)
		return 0;
	if (*first_r != 0 && *next_r > *first_r) {
		v->recent_lo = *first_r;
		v->recent_hi = *next_r;
	}
	return 0;
}

static bool
in_claim(uint32_t uid, uint32_t first, uint32_t next)
{
	return first != 0 && uid >= first && uid < next;
}

int
view_open(struct imap_session *s, const char *name, bool readonly)
{
	struct imap_view *v = &s->view;
	struct msg_record *recs = NULL;
	struct mailbox_status st;
	size_t n = 0;
	uint64_t modseq = 0;
	uint32_t first_recent = 0, next_recent = 0;
	int rc;

	memset(v, 0, sizeof(*v));
	rc = mailbox_open(s->sv->storage, s->user, name, readonly ? MAILBOX_READONLY : 0, &v->mb);
	if (rc < 0)
		return rc;
	/* read-only also when the user may change nothing (RFC 4314 4) */
	v->readonly = readonly || mailbox_readonly(v->mb);
	v->no_recent = s->rev2;
	v->name = xstrdup(name);
	rc = mailbox_records(v->mb, &recs, &n, &modseq);
	if (rc < 0)
		goto fail;
	rc = mailbox_status(v->mb, &st);
	if (rc < 0)
		goto fail;
	rc = claim_recent(v, &first_recent, &next_recent);
	if (rc < 0)
		goto fail;
	v->modseq = modseq;
	v->uidvalidity = st.uidvalidity;
	memcpy(v->mailboxid, st.mailboxid, sizeof(v->mailboxid));
	/* the claim read UIDNEXT after the status did */
	v->uidnext = next_recent > st.uidnext ? next_recent : st.uidnext;
	for (size_t i = 0; i < n; i++) {
		/* EXAMINE claims nothing and shows what no session took yet */
		bool recent = readonly ? first_recent != 0 && recs[i].uid >= first_recent
		                       : in_claim(recs[i].uid, first_recent, next_recent);
		view_push(v, &recs[i], recent);
	}
	if (n > 0 && recs[n - 1].uid >= v->uidnext)
		v->uidnext = recs[n - 1].uid + 1;
	free(recs);
	view_refresh_keywords(s, false);
	return 0;
fail:
	free(recs);
	mailbox_close(&v->mb);
	free(v->name);
	memset(v, 0, sizeof(*v));
	return rc;
}

void
view_close(struct imap_session *s)
{
	struct imap_view *v = &s->view;

	imap_idle_stop(s);
	if (v->mb != NULL)
		mailbox_close(&v->mb);
	free(v->name);
	free(v->msgs);
	free_keywords(v);
	sort_cache_free(&v->sort_cache);
	searchres_clear(v);
	context_free_all(v);
	memset(v, 0, sizeof(*v));
	v->no_recent = s->rev2;
}

/* Index of uid in the view, or -1 (binary search: UIDs ascend). */
static ssize_t
view_find(const struct imap_view *v, uint32_t uid)
{
	size_t lo = 0, hi = v->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		uint32_t u = v->msgs[mid].rec.uid;
		if (uid < u)
			hi = mid;
		else if (uid > u)
			lo = mid + 1;
		else
			return (ssize_t)mid;
	}
	return -1;
}

uint32_t
view_seq_of_uid(const struct imap_view *v, uint32_t uid)
{
	ssize_t i = view_find(v, uid);

	return i < 0 ? 0 : (uint32_t)i + 1;
}

/* Send the EXPUNGEs held back so far. */
static void
flush_expunges(struct imap_session *s)
{
	struct imap_view *v = &s->view;

	if (v->n_pending_expunge == 0)
		return;
	if (s->qresync) {
		/* RFC 7162 3.2.10: VANISHED replaces EXPUNGE. */
		uint32_t *uids = xcalloc(v->n_pending_expunge, sizeof(*uids));
		size_t k = 0;
		struct buf b = BUF_INIT(0);
		for (size_t i = 0; i < v->n && k < v->n_pending_expunge; i++)
			if (v->msgs[i].expunged)
				uids[k++] = v->msgs[i].rec.uid;
		seqset_format(uids, k, &b);
		if (k > 0)
			imap_untagged(s, "VANISHED %s", buf_cstr(&b));
		buf_free(&b);
		free(uids);
	} else {
		/* Highest first, so each number is valid when the client
		 * reads it and the view compacts in one pass afterwards. */
		for (size_t i = v->n; i-- > 0;) {
			if (v->msgs[i].expunged)
				imap_untagged(s, "%zu EXPUNGE", i + 1);
		}
	}
	size_t o = 0;
	for (size_t i = 0; i < v->n; i++) {
		if (!v->msgs[i].expunged)
			v->msgs[o++] = v->msgs[i];
		else
			v->n_recent -= v->msgs[i].recent;
	}
	v->n = o;
	v->n_pending_expunge = 0;
}

static void
mark_expunged(struct imap_view *v, uint32_t uid)
{
	ssize_t i = view_find(v, uid);

	if (i >= 0 && !v->msgs[i].expunged) {
		v->msgs[i].expunged = true;
		v->n_pending_expunge++;
	}
}

/* The count is kept (view.n_recent): a wake-up counting its whole view
 * cost a pass over 64 bytes per message, the most of view_apply() in a
 * profile of 1,000 woken sessions of a few hundred messages each. */
static void
announce_recent(struct imap_session *s)
{
	if (!s->rev2) /* RFC 9051 has no RECENT response */
		imap_untagged(s, "%zu RECENT", s->view.n_recent);
}

/*
 * Where a claim is a round trip (a database), the one session per mailbox
 * that would make it, woken in IDLE, sends EXISTS first and claims \Recent
 * on a wake-up of its own (view_claim_due()), queued behind the other
 * sessions' wake-ups; the others leave the new messages to it at once
 * (mailbox_claim_later()). Those 50 round trips per delivery to 50 users
 * held the workers every other woken session waited for: most of the time
 * a cross-node wake-up took. RFC 3501 7.3 sets no order between EXISTS and
 * RECENT, and in IDLE the client sees no flag before the claim (each
 * command and DONE makes it first). Not with NOTIFY, whose FETCH of the
 * new messages shows their flags at once, nor read-only (EXAMINE claims
 * nothing).
 *
 * Reserve that claim for this session where it is the one to make it
 * later (mailbox_claim_later()): true when reserved, so the caller claims
 * after EXISTS is out; false: claim now.
 */
static bool
claim_reserve(struct imap_session *s)
{
	return s->idling && s->notify == NULL && !s->view.readonly &&
	       mailbox_claim_later(s->view.mb);
}

void
view_claim_due(struct imap_session *s)
{
	struct imap_view *v = &s->view;
	uint32_t first = 0, next = 0;
	int rc;

	if (!v->claim_due || v->mb == NULL)
		return;
	/* in IDLE, the reservation makes the claim below not wait for a
	 * held row */
	claim_reserve(s);
	rc = claim_recent(v, &first, &next);
	if (rc == ROOST_EAGAIN && !s->idling)
		rc = claim_recent(v, &first, &next); /* this one waits */
	if (rc == ROOST_EAGAIN)
		return; /* the holder's change wakes us (or DONE, a command) */
	v->claim_due = false;
	if (rc == 0) {
		for (size_t i = 0; i < v->n; i++) {
			if (in_claim(v->msgs[i].rec.uid, first, next) && !v->msgs[i].recent) {
				v->msgs[i].recent = true;
				v->n_recent++;
			}
		}
	}
	announce_recent(s);
}

/* Bring the view up to what mailbox_changes_since() answered (rc, and
 * ch, which is freed here) and tell the client. */
static void
view_apply(struct imap_session *s, bool allow_expunge, int rc, struct mailbox_changes *chp)
{
	struct imap_view *v = &s->view;
	struct mailbox_changes ch = *chp;

	memset(chp, 0, sizeof(*chp));
	if (rc == ROOST_ENOTFOUND) {
		/* Deleted (or renamed away) under us: nothing sensible is
		 * left to show, so leave as Dovecot does. */
		if (!conn_is_closing(s->c)) {
			imap_untagged(s, "BYE Selected mailbox was deleted, have to disconnect");
			conn_close(s->c);
		}
		return;
	}
	if (rc == ROOST_ENOACCESS)
		return; /* another's mailbox whose r was revoked: nothing more */
	if (rc < 0) {
		conn_log(s->c, LOG_LEVEL_WARN, "event=sync_failed err=%s", roost_strerror(rc));
		return;
	}
	/* Keyword tables only grow: a name the view does not know yet shows
	 * up as a bit past its table in a changed record. Asking storage for
	 * the table every time was one more storage call per wake-up. */
	uint64_t known_kw = v->n_keywords >= 64 ? UINT64_MAX : ((uint64_t)1 << v->n_keywords) - 1;
	for (size_t i = 0; i < ch.n_changed; i++) {
		if ((ch.changed[i].keywords & ~known_kw) != 0) {
			view_refresh_keywords(s, true);
			break;
		}
	}

	for (size_t i = 0; i < ch.n_expunged; i++)
		mark_expunged(v, ch.expunged[i]);
	if (!ch.expunged_complete) {
		/* The expunge log does not reach back far enough: compare
		 * with the full list. */
		struct msg_record *recs = NULL;
		size_t n = 0;
		uint64_t ms;
		if (mailbox_records(v->mb, &recs, &n, &ms) == 0) {
			uint32_t *uids = xcalloc(n ? n : 1, sizeof(*uids));
			for (size_t i = 0; i < n; i++)
				uids[i] = recs[i].uid;
			for (size_t i = 0; i < v->n; i++) {
				uint32_t u = v->msgs[i].rec.uid;
				if (!uid_find(uids, n, u))
					mark_expunged(v, u);
			}
			free(uids);
			free(recs);
		}
	}

	uint32_t last_uid = v->n > 0 ? v->msgs[v->n - 1].rec.uid : 0;
	bool have_new = false;
	size_t n_new = 0;
	struct buf b = BUF_INIT(0);
	for (size_t i = 0; i < ch.n_changed; i++) {
		const struct msg_record *r = &ch.changed[i];
		if (r->uid > last_uid) {
			have_new = true;
			continue;
		}
		ssize_t k = view_find(v, r->uid);
		if (k < 0 || v->msgs[k].expunged)
			continue;
		struct view_msg *m = &v->msgs[k];
		bool differ = m->rec.flags != r->flags || m->rec.keywords != r->keywords;
		m->rec.flags = r->flags;
		m->rec.keywords = r->keywords;
		m->rec.modseq = r->modseq;
		if (differ) {
			buf_reset(&b);
			view_format_flags(v, m, &b);
			if (s->condstore)
				imap_untagged(s, "%zd FETCH (UID %u FLAGS %s MODSEQ (%llu))", k + 1,
				              m->rec.uid, buf_cstr(&b),
				              (unsigned long long)m->rec.modseq);
			else if (s->notify != NULL) /* RFC 5465 5.1: with UID */
				imap_untagged(s, "%zd FETCH (UID %u FLAGS %s)", k + 1, m->rec.uid,
				              buf_cstr(&b));
			else
				imap_untagged(s, "%zd FETCH (FLAGS %s)", k + 1, buf_cstr(&b));
		}
	}
	buf_free(&b);

	/* A claim that costs a round trip waits until EXISTS is out (below). */
	bool defer = have_new && claim_reserve(s);
	if (have_new) {
		uint32_t first_recent = 0, next_recent = 0, lo = v->recent_lo, hi = v->recent_hi;
		if (!defer)
			(void)claim_recent(v, &first_recent, &next_recent);
		for (size_t i = 0; i < ch.n_changed; i++) {
			const struct msg_record *r = &ch.changed[i];
			if (r->uid > last_uid) {
				bool recent =
				    !v->readonly && (in_claim(r->uid, first_recent, next_recent) ||
				                     in_claim(r->uid, lo, hi));
				view_push(v, r, recent);
				last_uid = r->uid;
				n_new++;
			}
		}
	}
	if (ch.uidnext > v->uidnext)
		v->uidnext = ch.uidnext;
	if (v->n > 0 && v->msgs[v->n - 1].rec.uid >= v->uidnext)
		v->uidnext = v->msgs[v->n - 1].rec.uid + 1;
	if (ch.highestmodseq > v->modseq)
		v->modseq = ch.highestmodseq;
	bool changed = ch.n_changed > 0 || ch.n_expunged > 0 || !ch.expunged_complete;
	mailbox_changes_free(&ch);

	if (allow_expunge)
		flush_expunges(s);
	if (have_new) {
		imap_untagged(s, "%zu EXISTS", v->n);
		if (defer) {
			v->claim_due = true;
			conn_wake(s->c);
		} else {
			announce_recent(s);
		}
		if (s->notify != NULL)
			imap_notify_new_messages(s, v->n - n_new);
	}
	if (changed && v->contexts != NULL)
		context_update(s);
}

void
view_sync(struct imap_session *s, bool allow_expunge)
{
	struct imap_view *v = &s->view;
	struct mailbox_changes ch;
	int rc;

	if (v->mb == NULL)
		return;
	view_claim_due(s);
	rc = mailbox_changes_since(v->mb, v->modseq, &ch);
	view_apply(s, allow_expunge, rc, &ch);
}

/* Changes a wake-up on the loop may bring: one delivery is one record; a
 * larger batch (a STORE over many messages) goes to a worker. */
#define SYNC_NB_MAX 32

bool
view_sync_nb(struct imap_session *s, bool allow_expunge)
{
	struct imap_view *v = &s->view;
	struct mailbox_changes ch;

	/* A search context is updated by running its search again; a \Recent
	 * claim left for later is a round trip. */
	if (v->mb == NULL || v->contexts != NULL || v->claim_due)
		return false;
	if (mailbox_changes_since_nb(v->mb, v->modseq, SYNC_NB_MAX, &ch) != 0)
		return false;
	view_apply(s, allow_expunge, 0, &ch);
	return true;
}

int
view_resolve_set(struct imap_cmd *cmd, const char *text, bool uid, uint32_t **idx_r, size_t *n_r)
{
	struct imap_view *v = &cmd->s->view;
	struct seqset set;

	if (strcmp(text, "$") == 0)
		return searchres_resolve(cmd, idx_r, n_r);
	if (seqset_parse(&cmd->arena, text, &set) < 0)
		return ROOST_EINVAL;
	if (uid) {
		uint32_t star = v->n > 0 ? v->msgs[v->n - 1].rec.uid : 0;
		seqset_resolve(&set, star);
	} else {
		if (v->n == 0) {
			/* "1:*" on an empty mailbox selects nothing. */
			if (strchr(text, '*') == NULL)
				return ROOST_ENOTFOUND;
			*idx_r = NULL;
			*n_r = 0;
			return 0;
		}
		seqset_resolve(&set, (uint32_t)v->n);
		if (set.n > 0 && set.r[set.n - 1].hi > v->n)
			return ROOST_ENOTFOUND;
	}
	uint32_t *idx = arena_alloc(&cmd->arena, (v->n ? v->n : 1) * sizeof(*idx));
	size_t n = 0;
	if (uid) {
		for (size_t r = 0; r < set.n; r++) {
			/* walk only the view's part inside the range */
			size_t lo = 0, hi = v->n;
			while (lo < hi) {
				size_t mid = lo + (hi - lo) / 2;
				if (v->msgs[mid].rec.uid < set.r[r].lo)
					lo = mid + 1;
				else
					hi = mid;
			}
			for (size_t i = lo; i < v->n && v->msgs[i].rec.uid <= set.r[r].hi; i++)
				idx[n++] = (uint32_t)i;
		}
	} else {
		for (size_t r = 0; r < set.n; r++)
			for (uint32_t q = set.r[r].lo; q <= set.r[r].hi && q >= 1; q++) {
				idx[n++] = q - 1;
				if (q == UINT32_MAX)
					break;
			}
	}
	*idx_r = idx;
	*n_r = n;
	return 0;
}

int
imap_parse_flags(struct imap_cmd *cmd, const struct imap_arg *a, size_t n, uint32_t *flags_r,
                 const char ***kw_r, size_t *n_kw_r)
{
	const char **kw = arena_alloc(&cmd->arena, (n ? n : 1) * sizeof(*kw));
	size_t nk = 0;
	uint32_t flags = 0;

	for (size_t i = 0; i < n; i++) {
		if (a[i].type != ARG_ATOM)
			return ROOST_EINVAL;
		const char *f = a[i].str;
		if (f[0] == '\\') {
			unsigned k;
			for (k = 0; k < 5; k++)
				if (strcasecmp(f, sys_flags[k]) == 0)
					break;
			if (k == 5) {
				if (strcasecmp(f, "\\Recent") == 0)
					return ROOST_EPERM;
				return ROOST_EINVAL;
			}
			flags |= 1u << k;
			continue;
		}
		if (!storage_keyword_valid(f))
			return ROOST_EINVAL;
		bool dup = false;
		for (size_t j = 0; j < nk; j++)
			dup |= strcasecmp(kw[j], f) == 0;
		if (!dup)
			kw[nk++] = f;
	}
	*flags_r = flags;
	*kw_r = kw;
	*n_kw_r = nk;
	return 0;
}

/* ------------------------------------------------------------------ */
/* QRESYNC                                                            */

static void
vanished_add(struct buf *b, uint32_t lo, uint32_t hi)
{
	if (b->len > 0)
		buf_append_byte(b, ',');
	if (lo == hi)
		buf_printf(b, "%u", lo);
	else
		buf_printf(b, "%u:%u", lo, hi);
}

void
view_vanished_earlier(struct imap_session *s, uint64_t modseq, const struct seqset *known)
{
	struct imap_view *v = &s->view;
	struct mailbox_changes ch = {0};
	struct buf b = BUF_INIT(0);
	struct seq_range all = {1, v->uidnext > 1 ? v->uidnext - 1 : 0};
	const struct seq_range *r = known != NULL ? known->r : &all;
	size_t nr = known != NULL ? known->n : (all.hi > 0 ? 1 : 0);

	if (mailbox_changes_since(v->mb, modseq, &ch) < 0)
		return;
	if (ch.expunged_complete) {
		for (size_t i = 0; i < ch.n_expunged; i++) {
			uint32_t u = ch.expunged[i], lo = u;
			if (known != NULL && !seqset_contains(known, u))
				continue;
			while (i + 1 < ch.n_expunged && ch.expunged[i + 1] == u + 1 &&
			       (known == NULL || seqset_contains(known, u + 1)))
				u = ch.expunged[++i];
			vanished_add(&b, lo, u);
		}
	} else {
		/* The log does not reach back: every known UID that is not
		 * in the mailbox (RFC 7162 3.2.5.2 allows reporting more).
		 * The view was just synchronised, so it is the mailbox. */
		size_t j = 0;
		for (size_t i = 0; i < nr; i++) {
			uint64_t lo = r[i].lo, hi = r[i].hi;
			while (j < v->n && v->msgs[j].rec.uid < lo)
				j++;
			uint64_t cur = lo;
			while (cur <= hi) {
				while (j < v->n && v->msgs[j].expunged)
					j++;
				uint64_t next = j < v->n ? v->msgs[j].rec.uid : (uint64_t)hi + 1;
				if (next > cur) {
					uint64_t end = next - 1 < hi ? next - 1 : hi;
					vanished_add(&b, (uint32_t)cur, (uint32_t)end);
					cur = end + 1;
				} else {
					cur = next + 1;
					j++;
				}
			}
		}
	}
	if (b.len > 0)
		imap_untagged(s, "VANISHED (EARLIER) %s", buf_cstr(&b));
	buf_free(&b);
	mailbox_changes_free(&ch);
}
