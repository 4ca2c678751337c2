/* Shared by roost import and export: progress, the import sink, Maildir++ names. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "roost/error.h"
#include "roost/hash.h"
#include "roost/mutf7.h"
#include "roost/storage.h"
#include "roost/uid.h"
#include "roost/xalloc.h"

#include "cli_transfer.h"

/* ---- progress ---- */

static double
since(const struct timespec *a, const struct timespec *b)
{
	return (double)(b->tv_sec - a->tv_sec) + (double)(b->tv_nsec - a->tv_nsec) / 1e9;
}

void
progress_start(struct progress *p, const char *what)
{
	memset(p, 0, sizeof(*p));
	p->what = what;
	p->tty = isatty(STDOUT_FILENO) == 1;
	clock_gettime(CLOCK_MONOTONIC, &p->start);
	p->last = p->start;
}

void
progress_total(struct progress *p, uint64_t msgs, uint64_t bytes)
{
	p->total_msgs += msgs;
	p->total_bytes += bytes;
}

static void
draw(struct progress *p, double secs)
{
	double rate = secs > 0 ? (double)p->done_msgs / secs : 0;
	double mbrate = secs > 0 ? (double)p->done_bytes / 1e6 / secs : 0;
	uint64_t total = p->total_msgs > p->done_msgs ? p->total_msgs : p->done_msgs;
	int width = 24, fill = total > 0 ? (int)((double)p->done_msgs * width / (double)total) : 0;
	char bar[32];
	long eta = -1;

	if (rate > 0 && total > p->done_msgs)
		eta = (long)((double)(total - p->done_msgs) / rate);
	else if (total == p->done_msgs)
		eta = 0;
	for (int i = 0; i < width; i++)
		bar[i] = i < fill ? '#' : '.';
	bar[width] = '\0';
	printf("\r%s [%s] %llu/%llu msgs  %.1f/%.1f MB  %.0f msg/s %.1f MB/s  ETA ", p->what, bar,
	       (unsigned long long)p->done_msgs, (unsigned long long)total,
	       (double)p->done_bytes / 1e6, (double)p->total_bytes / 1e6, rate, mbrate);
	if (eta < 0)
		printf("?    \033[K");
	else
		printf("%ld:%02ld:%02ld\033[K", eta / 3600, (eta / 60) % 60, eta % 60);
	fflush(stdout);
}

void
progress_step(struct progress *p, uint64_t bytes)
{
	struct timespec now;

	p->done_msgs++;
	p->done_bytes += bytes;
	if (!p->tty)
		return;
	clock_gettime(CLOCK_MONOTONIC, &now);
	if (since(&p->last, &now) < 0.1)
		return;
	p->last = now;
	draw(p, since(&p->start, &now));
}

double
progress_finish(struct progress *p)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	if (p->tty) {
		draw(p, since(&p->start, &now));
		printf("\n");
	}
	return since(&p->start, &now);
}

/* ---- the import sink ---- */

struct import_fp {
	uint64_t size;
	int64_t date;
	uint64_t hash;
	uint32_t count;
};

static int
fp_cmp(const void *a, const void *b)
{
	const struct import_fp *x = a, *y = b;

	if (x->size != y->size)
		return x->size < y->size ? -1 : 1;
	if (x->date != y->date)
		return x->date < y->date ? -1 : 1;
	if (x->hash != y->hash)
		return x->hash < y->hash ? -1 : 1;
	return 0;
}

/* Fingerprints of every message the target holds: read once, on the
 * first message that needs them. */
static int
load_fps(struct import_box *b)
{
	struct mailbox *mb = NULL;
	struct msg_record *recs = NULL;
	size_t n = 0, k = 0;
	uint64_t hms;
	int rc;

	b->fps_loaded = true;
	if ((rc = mailbox_open(b->ctx->st, b->ctx->user, b->name, MAILBOX_READONLY, &mb)) != 0)
		return rc;
	if ((rc = mailbox_records(mb, &recs, &n, &hms)) != 0)
		goto out;
	b->fps = xcalloc(n + 1, sizeof(*b->fps));
	for (size_t i = 0; i < n; i++) {
		struct msg_view v = {0};

		if ((rc = mailbox_read(mb, recs[i].uid, &v)) == ROOST_ENOTFOUND)
			continue;
		if (rc != 0)
			goto out;
		b->fps[k].size = v.len;
		b->fps[k].date = recs[i].internal_date;
		b->fps[k].hash = hash_fnv1a64(v.data, v.len, HASH_FNV1A64_INIT);
		b->fps[k].count = 1;
		msg_view_release(&v);
		k++;
	}
	if (k > 1)
		qsort(b->fps, k, sizeof(*b->fps), fp_cmp);
	/* equal ones counted in the first */
	b->n_fps = 0;
	for (size_t i = 0; i < k; i++) {
		if (b->n_fps > 0 && fp_cmp(&b->fps[b->n_fps - 1], &b->fps[i]) == 0)
			b->fps[b->n_fps - 1].count++;
		else
			b->fps[b->n_fps++] = b->fps[i];
	}
	rc = 0;
out:
	free(recs);
	mailbox_close(&mb);
	return rc;
}

int
import_box_begin(struct import_ctx *c, const char *name, uint32_t src_uidvalidity,
                 struct import_box *b)
{
	struct mailbox_status s;
	struct mailbox *mb = NULL;
	struct msg_record *recs = NULL;
	size_t n = 0;
	uint64_t hms;
	int rc;

	memset(b, 0, sizeof(*b));
	b->ctx = c;
	b->name = xstrdup(name);
	rc = storage_status(c->st, c->user, name, &s);
	if (rc == ROOST_ENOTFOUND) {
		rc = storage_create(c->st, c->user, name, 0);
		if (rc == ROOST_EEXISTS)
			rc = 0;
		if (rc == 0)
			rc = storage_status(c->st, c->user, name, &s);
	}
	if (rc != 0)
		return rc;
	c->mailboxes++;
	if (src_uidvalidity != 0 && s.uidvalidity != src_uidvalidity && s.uidnext == 1 &&
	    storage_set_uids(c->st, c->user, name, src_uidvalidity, 0) == 0)
		s.uidvalidity = src_uidvalidity;
	b->by_uid = src_uidvalidity != 0 && s.uidvalidity == src_uidvalidity;
	b->uidnext = s.uidnext;
	if (!b->by_uid)
		return 0;
	if ((rc = mailbox_open(c->st, c->user, name, MAILBOX_READONLY, &mb)) != 0)
		return rc;
	if ((rc = mailbox_records(mb, &recs, &n, &hms)) == 0) {
		b->uids = xcalloc(n + 1, sizeof(*b->uids));
		for (size_t i = 0; i < n; i++)
			b->uids[i] = recs[i].uid;
		b->n_uids = n;
	}
	free(recs);
	mailbox_close(&mb);
	return rc;
}

bool
import_box_has_uid(const struct import_box *b, uint32_t src_uid)
{
	/* Below UIDNEXT and absent: the target had it and expunged it since
	 * (or skipped it), so it is not new. */
	return b->by_uid && src_uid != 0 &&
	       (src_uid < b->uidnext || uid_find(b->uids, b->n_uids, src_uid));
}

static struct import_fp *
fp_find(struct import_box *b, const struct import_fp *key)
{
	return bsearch(key, b->fps, b->n_fps, sizeof(*b->fps), fp_cmp);
}

int
import_box_add(struct import_box *b, const struct import_msg *m)
{
	struct import_ctx *c = b->ctx;
	struct msg_input in = {.data = m->data,
	                       .len = m->len,
	                       .fd = -1,
	                       .flags = m->flags,
	                       .keywords = m->keywords,
	                       .n_keywords = m->n_keywords,
	                       .internal_date = m->date,
	                       .has_internal_date = true};
	bool want_uid = b->by_uid && m->src_uid != 0;
	uint32_t uid = 0, uidv;
	int rc;

	if (want_uid && import_box_has_uid(b, m->src_uid)) {
		c->skipped++;
		return 1;
	}
	if (!want_uid) {
		struct import_fp key = {.size = m->len,
		                        .date = m->date,
		                        .hash = hash_fnv1a64(m->data, m->len, HASH_FNV1A64_INIT)};
		struct import_fp *hit;

		if (!b->fps_loaded && (rc = load_fps(b)) != 0)
			return rc;
		hit = fp_find(b, &key);
		if (hit != NULL && hit->count > 0) {
			hit->count--;
			c->skipped++;
			return 1;
		}
	}
	if (want_uid && m->src_uid > b->uidnext &&
	    (rc = storage_set_uids(c->st, c->user, b->name, 0, m->src_uid)) != 0)
		return rc;
	if ((rc = storage_append(c->st, c->user, b->name, &in, &uidv, &uid)) != 0)
		return rc;
	if (uid >= b->uidnext)
		b->uidnext = uid + 1;
	c->added++;
	c->bytes_added += m->len;
	return 0;
}

void
import_box_end(struct import_box *b)
{
	free(b->name);
	free(b->uids);
	free(b->fps);
	memset(b, 0, sizeof(*b));
}

/* ---- Maildir++ names and flags ---- */

int
maildir_name_decode(const char *dirname, struct buf *out)
{
	struct buf raw = BUF_INIT(4096);
	const char *p = dirname[0] == '.' ? dirname + 1 : dirname;
	int rc = 0;

	for (; *p != '\0' && rc == 0; p++) {
		if (*p == '.')
			rc = buf_append_byte(&raw, '/');
		else if (p[0] == '%' && p[1] == '2' && (p[2] == 'e' || p[2] == 'E'))
			rc = buf_append_byte(&raw, '.'), p += 2;
		else if (p[0] == '%' && p[1] == '2' && p[2] == '5')
			rc = buf_append_byte(&raw, '%'), p += 2;
		else
			rc = buf_append_byte(&raw, (uint8_t)*p);
	}
	if (rc == 0)
		rc = mutf7_decode((const char *)raw.data, raw.len, out);
	buf_free(&raw);
	return rc;
}

int
maildir_name_encode(const char *name, struct buf *out)
{
	struct buf enc = BUF_INIT(4096);
	int rc = mutf7_encode(name, strlen(name), &enc);

	if (rc == 0)
		rc = buf_append_byte(out, '.');
	for (size_t i = 0; i < enc.len && rc == 0; i++) {
		if (enc.data[i] == '/')
			rc = buf_append_byte(out, '.');
		else if (enc.data[i] == '.')
			rc = buf_append_str(out, "%2e");
		else if (enc.data[i] == '%')
			rc = buf_append_str(out, "%25");
		else
			rc = buf_append_byte(out, enc.data[i]);
	}
	buf_free(&enc);
	return rc;
}

uint32_t
maildir_letters_flags(const char *info, uint64_t *kwbits_r)
{
	uint32_t flags = 0;

	*kwbits_r = 0;
	for (; *info != '\0' && *info != ','; info++) {
		switch (*info) {
		case 'S':
			flags |= MSG_SEEN;
			break;
		case 'R':
			flags |= MSG_ANSWERED;
			break;
		case 'F':
			flags |= MSG_FLAGGED;
			break;
		case 'T':
			flags |= MSG_DELETED;
			break;
		case 'D':
			flags |= MSG_DRAFT;
			break;
		default:
			if (*info >= 'a' && *info <= 'z')
				*kwbits_r |= 1ULL << (*info - 'a');
		}
	}
	return flags;
}

void
maildir_flags_letters(uint32_t flags, uint64_t kwbits, char *out)
{
	size_t n = 0;

	/* Maildir wants the letters in ASCII order. */
	if (flags & MSG_DRAFT)
		out[n++] = 'D';
	if (flags & MSG_FLAGGED)
		out[n++] = 'F';
	if (flags & MSG_ANSWERED)
		out[n++] = 'R';
	if (flags & MSG_SEEN)
		out[n++] = 'S';
	if (flags & MSG_DELETED)
		out[n++] = 'T';
	for (int k = 0; k < 26; k++) {
		if (kwbits & (1ULL << k))
			out[n++] = (char)('a' + k);
	}
	out[n] = '\0';
}
