/*
 * The outbound queue on disk.
 *
 * Layout under <data_dir>/queue:
 *
 *   tmp/              files being written; anything here after a crash is
 *                     garbage (removed at start-up)
 *   <id>.msg          the message exactly as it goes on the wire (CRLF,
 *                     not dot-stuffed), DKIM-Signature and Received first;
 *                     written once, never changed
 *   <id>.env          the envelope, a text file rewritten as a whole:
 *
 *       roost-queue 1
 *       id <id>
 *       created <unix time>
 *       sender <f>            (f: a field, see below)
 *       user <f>              (authenticated submitter)
 *       envid <f>
 *       ret <f>
 *       flags <smtputf8|8bitmime|-> ...
 *       size <bytes of .msg>
 *       attempts <n>
 *       next <unix time>
 *       held <0|1>
 *       warned <0|1>
 *       rcpt <pending|sent|failed> <code> <addr f> <notify f> <orcpt f> <remote f> <status f>
 *       ...
 *       end
 *
 *   A field is percent-encoded: every byte outside the printable ASCII
 *   set, and ' ', '%' and '~', as %XX; the empty string is "~". A file
 *   without its "end" line, or with any unknown line, is corrupt.
 *   ctl.sock          the running server's control socket (`roost queue`)
 *
 * The crash argument. An entry exists when <id>.env exists; the server
 * answers 250 only after:
 *   1. tmp/<id>.msg written and fsynced, renamed to <id>.msg, queue/
 *      fsynced (the message is durable before any envelope names it);
 *   2. tmp/<id>.env written and fsynced, renamed to <id>.env, queue/
 *      fsynced.
 * A crash before 2 completes leaves no envelope: the client got no 250 and
 * sends again; start-up removes tmp/ and any .msg without .env. A crash
 * after 2 leaves a complete entry, delivered after the restart. Every
 * update (a recipient sent or failed, a retry time) goes through
 * tmp/, fsync, rename over <id>.env, fsync of queue/: rename is atomic, so
 * the envelope is the old one or the new one, never a mix. A recipient is
 * marked sent only after the remote 250, so a crash between that 250 and
 * the rename delivers it once more: SMTP's at-least-once, never a loss.
 * Removing a finished entry unlinks <id>.env first (fsync), then <id>.msg,
 * so a crash in between leaves an orphan message, which start-up removes.
 * With [storage] fsync = no the fsyncs are skipped (benchmarks only).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "roost/config.h"
#include "roost/delivery.h"
#include "roost/error.h"
#include "roost/fdio.h"
#include "roost/hex.h"
#include "roost/log.h"
#include "roost/queue.h"
#include "roost/xalloc.h"

struct queue {
	char dir[3072]; /* short enough that every path built from it fits PATH_MAX */
	bool sync;

	/* Lock order: mu alone; held only for list changes, never for I/O.
	 * pending: written, not committed; ready: committed, not taken. */
	pthread_mutex_t mu;
	struct queue_entry *pending, *ready;
	void (*notify)(void *arg);
	void *notify_arg;
};

/* ---- helpers ---- */

bool
queue_id_valid(const char *id)
{
	size_t n = strlen(id);

	if (n == 0 || n >= QUEUE_ID_LEN)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = id[i];

		if (!((c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')))
			return false;
	}
	return true;
}

void
queue_dir_of(const struct roost_config *cfg, char *buf, size_t size)
{
	snprintf(buf, size, "%s/queue", cfg->data_dir);
}

const char *
queue_dir(const struct queue *q)
{
	return q->dir;
}

void
queue_msg_path(const struct queue *q, const char *id, char *buf, size_t size)
{
	snprintf(buf, size, "%s/%s.msg", q->dir, id);
}

static void
put_field(struct buf *b, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";

	if (s == NULL || s[0] == '\0') {
		buf_append_byte(b, '~');
		return;
	}
	for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
		if (*p <= ' ' || *p >= 0x7f || *p == '%' || *p == '~') {
			buf_append_byte(b, '%');
			buf_append_byte(b, (uint8_t)hex[*p >> 4]);
			buf_append_byte(b, (uint8_t)hex[*p & 15]);
		} else {
			buf_append_byte(b, *p);
		}
	}
}

/* Decode one field (a token without spaces); NULL when malformed. */
static char *
get_field(const char *tok)
{
	size_t n = strlen(tok), o = 0;
	char *out;

	if (n == 0)
		return NULL;
	if (strcmp(tok, "~") == 0)
		return xstrdup("");
	out = xmalloc(n + 1);
	for (size_t i = 0; i < n; i++) {
		if (tok[i] == '%') {
			int b;

			/* a NUL would cut the field short */
			if (i + 2 >= n || (b = hex_byte(tok + i + 1)) <= 0) {
				free(out);
				return NULL;
			}
			out[o++] = (char)b;
			i += 2;
		} else if (tok[i] == '~') {
			free(out);
			return NULL;
		} else {
			out[o++] = tok[i];
		}
	}
	out[o] = '\0';
	return out;
}

static const char *const rcpt_states[] = {"pending", "sent", "failed"};

static void
serialize(const struct queue_entry *e, struct buf *b)
{
	buf_printf(b, "roost-queue 1\nid %s\ncreated %lld\nsender ", e->id, (long long)e->created);
	put_field(b, e->sender);
	buf_append_str(b, "\nuser ");
	put_field(b, e->user);
	buf_append_str(b, "\nenvid ");
	put_field(b, e->envid);
	buf_append_str(b, "\nret ");
	put_field(b, e->ret);
	buf_printf(b, "\nflags%s%s%s\n", e->smtputf8 ? " smtputf8" : "",
	           e->body_8bit ? " 8bitmime" : "", !e->smtputf8 && !e->body_8bit ? " -" : "");
	buf_printf(b, "size %llu\nattempts %u\nnext %lld\nheld %d\nwarned %d\n",
	           (unsigned long long)e->size, e->attempts, (long long)e->next_try,
	           e->held ? 1 : 0, e->warned ? 1 : 0);
	for (size_t i = 0; i < e->n_rcpts; i++) {
		const struct queue_rcpt *r = &e->rcpts[i];

		buf_printf(b, "rcpt %s %d ", rcpt_states[r->state], r->code);
		put_field(b, r->addr);
		buf_append_byte(b, ' ');
		put_field(b, r->notify);
		buf_append_byte(b, ' ');
		put_field(b, r->orcpt);
		buf_append_byte(b, ' ');
		put_field(b, r->remote);
		buf_append_byte(b, ' ');
		put_field(b, r->status);
		buf_append_byte(b, '\n');
	}
	buf_append_str(b, "end\n");
}

static bool
parse_i64(const char *s, int64_t *v)
{
	char *end;
	long long x;

	if (s == NULL || *s == '\0')
		return false;
	errno = 0;
	x = strtoll(s, &end, 10);
	if (errno != 0 || *end != '\0')
		return false;
	*v = x;
	return true;
}

/* Parse an envelope; NULL when corrupt. */
static struct queue_entry *
parse_env(char *text)
{
	struct queue_entry *e = xcalloc(1, sizeof(*e));
	char *save = NULL, *line;
	bool header = false, end = false;
	size_t cap = 0;

	for (line = strtok_r(text, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save)) {
		char *tok[8] = {0}, *s2 = NULL;
		size_t nt = 0;
		int64_t v;

		if (end)
			goto bad;
		for (char *t = strtok_r(line, " ", &s2); t != NULL && nt < 8;
		     t = strtok_r(NULL, " ", &s2))
			tok[nt++] = t;
		if (nt == 0)
			goto bad;
		if (!header) {
			if (nt != 2 || strcmp(tok[0], "roost-queue") != 0 ||
			    strcmp(tok[1], "1") != 0)
				goto bad;
			header = true;
		} else if (strcmp(tok[0], "end") == 0 && nt == 1) {
			end = true;
		} else if (strcmp(tok[0], "id") == 0 && nt == 2) {
			if (!queue_id_valid(tok[1]))
				goto bad;
			snprintf(e->id, sizeof(e->id), "%s", tok[1]);
		} else if (strcmp(tok[0], "created") == 0 && nt == 2 && parse_i64(tok[1], &v)) {
			e->created = v;
		} else if (strcmp(tok[0], "next") == 0 && nt == 2 && parse_i64(tok[1], &v)) {
			e->next_try = v;
		} else if (strcmp(tok[0], "size") == 0 && nt == 2 && parse_i64(tok[1], &v) &&
		           v >= 0) {
			e->size = (uint64_t)v;
		} else if (strcmp(tok[0], "attempts") == 0 && nt == 2 && parse_i64(tok[1], &v) &&
		           v >= 0 && v < 1000000) {
			e->attempts = (unsigned)v;
		} else if (strcmp(tok[0], "held") == 0 && nt == 2 && parse_i64(tok[1], &v)) {
			e->held = v != 0;
		} else if (strcmp(tok[0], "warned") == 0 && nt == 2 && parse_i64(tok[1], &v)) {
			e->warned = v != 0;
		} else if ((strcmp(tok[0], "sender") == 0 || strcmp(tok[0], "user") == 0 ||
		            strcmp(tok[0], "envid") == 0 || strcmp(tok[0], "ret") == 0) &&
		           nt == 2) {
			char *f = get_field(tok[1]);

			if (f == NULL)
				goto bad;
			if (tok[0][0] == 's') {
				free(e->sender);
				e->sender = f;
			} else if (tok[0][0] == 'u') {
				free(e->user);
				e->user = f;
			} else if (tok[0][0] == 'e') {
				free(e->envid);
				e->envid = f;
			} else {
				snprintf(e->ret, sizeof(e->ret), "%s", f);
				free(f);
			}
		} else if (strcmp(tok[0], "flags") == 0) {
			for (size_t i = 1; i < nt; i++) {
				if (strcmp(tok[i], "smtputf8") == 0)
					e->smtputf8 = true;
				else if (strcmp(tok[i], "8bitmime") == 0)
					e->body_8bit = true;
				else if (strcmp(tok[i], "-") != 0)
					goto bad;
			}
		} else if (strcmp(tok[0], "rcpt") == 0 && nt == 8) {
			struct queue_rcpt r = {0};
			int st = -1;

			for (int i = 0; i < 3; i++) {
				if (strcmp(tok[1], rcpt_states[i]) == 0)
					st = i;
			}
			if (st < 0 || !parse_i64(tok[2], &v) || v < 0 || v > 999)
				goto bad;
			r.state = (enum queue_rcpt_state)st;
			r.code = (int)v;
			r.addr = get_field(tok[3]);
			r.notify = get_field(tok[4]);
			r.orcpt = get_field(tok[5]);
			r.remote = get_field(tok[6]);
			r.status = get_field(tok[7]);
			if (e->n_rcpts == cap) {
				cap = cap == 0 ? 4 : cap * 2;
				e->rcpts = xreallocarray(e->rcpts, cap, sizeof(*e->rcpts));
			}
			e->rcpts[e->n_rcpts++] = r;
			if (r.addr == NULL || r.notify == NULL || r.orcpt == NULL ||
			    r.remote == NULL || r.status == NULL || r.addr[0] == '\0')
				goto bad;
		} else {
			goto bad;
		}
	}
	if (!end || e->id[0] == '\0' || e->sender == NULL || e->n_rcpts == 0)
		goto bad;
	if (e->user == NULL)
		e->user = xstrdup("");
	if (e->envid == NULL)
		e->envid = xstrdup("");
	return e;
bad:
	queue_entry_free(&e);
	return NULL;
}

void
queue_entry_free(struct queue_entry **ep)
{
	struct queue_entry *e = *ep;

	if (e == NULL)
		return;
	for (size_t i = 0; i < e->n_rcpts; i++) {
		free(e->rcpts[i].addr);
		free(e->rcpts[i].notify);
		free(e->rcpts[i].orcpt);
		free(e->rcpts[i].remote);
		free(e->rcpts[i].status);
	}
	free(e->rcpts);
	free(e->sender);
	free(e->user);
	free(e->envid);
	free(e);
	*ep = NULL;
}

size_t
queue_entry_pending(const struct queue_entry *e)
{
	size_t n = 0;

	for (size_t i = 0; i < e->n_rcpts; i++)
		n += e->rcpts[i].state == QUEUE_RCPT_PENDING;
	return n;
}

int
queue_load(const char *dir, const char *id, struct queue_entry **e_r)
{
	char path[PATH_MAX];
	struct buf b;
	struct queue_entry *e;
	int err;

	if (!queue_id_valid(id))
		return ROOST_EINVAL;
	snprintf(path, sizeof(path), "%s/%s.env", dir, id);
	if ((err = fdio_read_file(path, 16u << 20, &b)) != 0)
		return err;
	if (memchr(b.data, '\0', b.len) != NULL) {
		buf_free(&b);
		return ROOST_EINVAL;
	}
	e = parse_env((char *)b.data != NULL ? (char *)b.data : (char *)"");
	buf_free(&b);
	if (e == NULL || strcmp(e->id, id) != 0) {
		queue_entry_free(&e);
		return ROOST_EINVAL;
	}
	*e_r = e;
	return 0;
}

/* Write data to tmp/<name>, fsync, rename to <dir>/<final>, fsync dir. */
static int
write_atomic(const char *dir, bool sync, const char *name, const char *final, const void *data,
             size_t len)
{
	char tmp[PATH_MAX], dst[PATH_MAX];
	int fd, err;

	snprintf(tmp, sizeof(tmp), "%s/tmp/%s", dir, name);
	snprintf(dst, sizeof(dst), "%s/%s", dir, final);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return ROOST_EIO;
	err = fdio_write_all(fd, data, len);
	if (err == 0 && sync && fsync(fd) != 0)
		err = ROOST_EIO;
	if (close(fd) != 0)
		err = ROOST_EIO;
	if (err == 0 && rename(tmp, dst) != 0)
		err = ROOST_EIO;
	if (err == 0 && sync)
		err = fdio_fsync_dir(dir);
	if (err != 0) {
		log_error("event=queue-write path=%s error=\"%s\"", dst, strerror(errno));
		unlink(tmp);
	}
	return err;
}

int
queue_save_in(const char *dir, bool sync, const struct queue_entry *e)
{
	struct buf b = BUF_INIT(0);
	char name[QUEUE_ID_LEN + 16];
	int err;

	serialize(e, &b);
	snprintf(name, sizeof(name), "%s.env", e->id);
	err = write_atomic(dir, sync, name, name, b.data, b.len);
	buf_free(&b);
	return err;
}

void
queue_remove_in(const char *dir, bool sync, const char *id)
{
	char path[PATH_MAX];

	snprintf(path, sizeof(path), "%s/%s.env", dir, id);
	if (unlink(path) != 0 && errno != ENOENT)
		log_error("event=queue-remove path=%s error=\"%s\"", path, strerror(errno));
	if (sync)
		fdio_fsync_dir(dir);
	snprintf(path, sizeof(path), "%s/%s.msg", dir, id);
	unlink(path);
}

void
queue_remove_batch(struct queue *q, char (*ids)[QUEUE_ID_LEN], size_t n)
{
	char path[PATH_MAX];

	if (n == 0)
		return;
	for (size_t i = 0; i < n; i++) {
		snprintf(path, sizeof(path), "%s/%s.env", q->dir, ids[i]);
		if (unlink(path) != 0 && errno != ENOENT)
			log_error("event=queue-remove path=%s error=\"%s\"", path, strerror(errno));
	}
	if (q->sync)
		fdio_fsync_dir(q->dir); /* one for the whole batch */
	for (size_t i = 0; i < n; i++) {
		snprintf(path, sizeof(path), "%s/%s.msg", q->dir, ids[i]);
		unlink(path);
	}
}

int
queue_entry_save(struct queue *q, const struct queue_entry *e)
{
	return queue_save_in(q->dir, q->sync, e);
}

void
queue_entry_remove(struct queue *q, const struct queue_entry *e)
{
	queue_remove_in(q->dir, q->sync, e->id);
}

/* ---- scanning ---- */

static int
cmp_created(const void *a, const void *b)
{
	const struct queue_entry *x = *(const struct queue_entry *const *)a;
	const struct queue_entry *y = *(const struct queue_entry *const *)b;

	if (x->created != y->created)
		return x->created < y->created ? -1 : 1;
	return strcmp(x->id, y->id);
}

/* Ids of dir's files ending in suffix. */
static int
list_ids(const char *dir, const char *suffix, char ***v_r, size_t *n_r)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	char **v = NULL;
	size_t n = 0, sl = strlen(suffix);

	if (d == NULL)
		return errno == ENOENT ? ROOST_ENOTFOUND : ROOST_EIO;
	while ((de = readdir(d)) != NULL) {
		size_t len = strlen(de->d_name);

		if (len <= sl || strcmp(de->d_name + len - sl, suffix) != 0)
			continue;
		v = xreallocarray(v, n + 1, sizeof(*v));
		v[n] = xstrdup(de->d_name);
		v[n][len - sl] = '\0';
		n++;
	}
	closedir(d);
	*v_r = v;
	*n_r = n;
	return 0;
}

static void
free_ids(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

int
queue_scan(const char *dir, struct queue_entry ***v_r, size_t *n_r)
{
	char **ids;
	size_t n, k = 0;
	struct queue_entry **v;
	int err = list_ids(dir, ".env", &ids, &n);

	if (err == ROOST_ENOTFOUND) {
		*v_r = NULL;
		*n_r = 0;
		return 0;
	}
	if (err != 0)
		return err;
	v = xcalloc(n + 1, sizeof(*v));
	for (size_t i = 0; i < n; i++) {
		if (queue_load(dir, ids[i], &v[k]) == 0)
			k++;
	}
	free_ids(ids, n);
	qsort(v, k, sizeof(*v), cmp_created);
	*v_r = v;
	*n_r = k;
	return 0;
}

int
queue_check(const char *dir, struct buf *report)
{
	char **ids = NULL, **msgs = NULL;
	size_t n = 0, nm = 0;
	int bad = 0, err;
	struct stat sb;

	if (stat(dir, &sb) != 0)
		return 0; /* no queue yet: nothing to check */
	if ((err = list_ids(dir, ".env", &ids, &n)) != 0) {
		buf_printf(report, "queue: cannot read %s\n", dir);
		return ROOST_EINVAL;
	}
	for (size_t i = 0; i < n; i++) {
		struct queue_entry *e = NULL;
		char path[PATH_MAX];

		if (queue_load(dir, ids[i], &e) != 0) {
			buf_printf(report, "queue: %s.env: malformed envelope\n", ids[i]);
			bad++;
			continue;
		}
		snprintf(path, sizeof(path), "%s/%s.msg", dir, ids[i]);
		if (stat(path, &sb) != 0) {
			buf_printf(report, "queue: %s: envelope without message\n", ids[i]);
			bad++;
		} else if ((uint64_t)sb.st_size != e->size) {
			buf_printf(report, "queue: %s: message is %lld bytes, envelope says %llu\n",
			           ids[i], (long long)sb.st_size, (unsigned long long)e->size);
			bad++;
		}
		if (queue_entry_pending(e) == 0) {
			buf_printf(report, "queue: %s: no pending recipient left\n", ids[i]);
			bad++;
		}
		queue_entry_free(&e);
	}
	if (list_ids(dir, ".msg", &msgs, &nm) == 0) {
		for (size_t i = 0; i < nm; i++) {
			bool found = false;

			for (size_t j = 0; j < n && !found; j++)
				found = strcmp(msgs[i], ids[j]) == 0;
			/* A crash between writing the message and its envelope
			 * leaves this; it was never acknowledged, and start-up
			 * removes it. Worth a note, not a problem. */
			if (!found)
				buf_printf(report,
				           "queue: %s: message without envelope (never "
				           "acknowledged; removed at the next start)\n",
				           msgs[i]);
		}
	}
	free_ids(ids, n);
	free_ids(msgs, nm);
	return bad == 0 ? 0 : ROOST_EINVAL;
}

/* ---- open, recover ---- */

static int
mkdir_p(const char *path)
{
	if (mkdir(path, 0700) == 0 || errno == EEXIST)
		return 0;
	log_error("event=queue-open path=%s error=\"%s\"", path, strerror(errno));
	return ROOST_EIO;
}

static void
recover(struct queue *q)
{
	char path[PATH_MAX], **ids = NULL, **msgs = NULL;
	size_t n = 0, nm = 0;
	DIR *d;
	struct dirent *de;

	snprintf(path, sizeof(path), "%s/tmp", q->dir);
	if ((d = opendir(path)) != NULL) {
		while ((de = readdir(d)) != NULL) {
			if (de->d_name[0] == '.')
				continue;
			snprintf(path, sizeof(path), "%s/tmp/%s", q->dir, de->d_name);
			unlink(path);
		}
		closedir(d);
	}
	if (list_ids(q->dir, ".env", &ids, &n) != 0)
		return;
	for (size_t i = 0; i < n; i++) {
		struct queue_entry *e = NULL;
		int err = queue_load(q->dir, ids[i], &e);

		if (err != 0) {
			/* Left in place for `roost check` and a human. */
			log_error("event=queue-recover id=%s status=corrupt", ids[i]);
			continue;
		}
		e->next = q->ready;
		q->ready = e;
	}
	if (list_ids(q->dir, ".msg", &msgs, &nm) == 0) {
		for (size_t i = 0; i < nm; i++) {
			bool found = false;

			for (size_t j = 0; j < n && !found; j++)
				found = strcmp(msgs[i], ids[j]) == 0;
			if (!found) {
				snprintf(path, sizeof(path), "%s/%s.msg", q->dir, msgs[i]);
				unlink(path);
				log_info("event=queue-recover id=%s status=orphan-removed",
				         msgs[i]);
			}
		}
	}
	log_info("event=queue-recover entries=%zu", n);
	free_ids(ids, n);
	free_ids(msgs, nm);
}

int
queue_open(const struct roost_config *cfg, bool recover_now, struct queue **q_r)
{
	struct queue *q = xcalloc(1, sizeof(*q));
	char tmp[PATH_MAX];

	queue_dir_of(cfg, q->dir, sizeof(q->dir));
	q->sync = cfg->storage_fsync;
	pthread_mutex_init(&q->mu, NULL);
	snprintf(tmp, sizeof(tmp), "%s/tmp", q->dir);
	if (mkdir_p(cfg->data_dir) != 0 || mkdir_p(q->dir) != 0 || mkdir_p(tmp) != 0) {
		queue_close(&q);
		return ROOST_EIO;
	}
	if (recover_now)
		recover(q);
	*q_r = q;
	return 0;
}

static void
free_list(struct queue_entry *e)
{
	while (e != NULL) {
		struct queue_entry *next = e->next;

		queue_entry_free(&e);
		e = next;
	}
}

void
queue_close(struct queue **qp)
{
	struct queue *q = *qp;

	if (q == NULL)
		return;
	free_list(q->pending);
	free_list(q->ready);
	pthread_mutex_destroy(&q->mu);
	free(q);
	*qp = NULL;
}

/* ---- submission ---- */

static int
copy_message(int out, const struct queue_submission *sub)
{
	uint8_t tmp[65536];
	uint64_t off = sub->offset, left = sub->len;
	int err;

	if ((err = fdio_write_all(out, sub->prefix, sub->prefix_len)) != 0)
		return err;
	if (sub->fd < 0)
		return fdio_write_all(out, sub->data, sub->len);
	while (left > 0) {
		size_t want = left < sizeof(tmp) ? (size_t)left : sizeof(tmp);
		ssize_t r = pread(sub->fd, tmp, want, (off_t)off);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return ROOST_EIO;
		if ((err = fdio_write_all(out, tmp, (size_t)r)) != 0)
			return err;
		off += (uint64_t)r;
		left -= (uint64_t)r;
	}
	return 0;
}

int
queue_submit(struct queue *q, const struct queue_submission *sub, char id_r[QUEUE_ID_LEN])
{
	struct queue_entry *e = xcalloc(1, sizeof(*e));
	char tmp[PATH_MAX], dst[PATH_MAX];
	struct buf b = BUF_INIT(0);
	struct stat sb;
	int fd = -1, err;
	time_t now = time(NULL);

	/* The session's id when it is free (it names the message in both
	 * logs), else a new one. */
	if (sub->id != NULL && queue_id_valid(sub->id))
		snprintf(e->id, sizeof(e->id), "%s", sub->id);
	else
		delivery_new_id(e->id);
	for (int tries = 0;; tries++) {
		snprintf(dst, sizeof(dst), "%s/%s.env", q->dir, e->id);
		if (stat(dst, &sb) != 0)
			break;
		if (tries > 100) {
			err = ROOST_ETEMP;
			goto fail;
		}
		delivery_new_id(e->id);
	}
	e->sender = xstrdup(sub->sender != NULL ? sub->sender : "");
	e->user = xstrdup(sub->user != NULL ? sub->user : "");
	e->envid = xstrdup(sub->envid != NULL ? sub->envid : "");
	snprintf(e->ret, sizeof(e->ret), "%s", sub->ret != NULL ? sub->ret : "");
	e->smtputf8 = sub->smtputf8;
	e->body_8bit = sub->body_8bit;
	e->created = now;
	e->next_try = now;
	e->size = sub->prefix_len + sub->len;
	e->n_rcpts = sub->n_rcpts;
	e->rcpts = xcalloc(sub->n_rcpts, sizeof(*e->rcpts));
	for (size_t i = 0; i < sub->n_rcpts; i++) {
		const struct queue_rcpt_in *in = &sub->rcpts[i];

		e->rcpts[i].addr = xstrdup(in->addr);
		e->rcpts[i].notify = xstrdup(in->notify != NULL ? in->notify : "");
		e->rcpts[i].orcpt = xstrdup(in->orcpt != NULL ? in->orcpt : "");
		e->rcpts[i].remote = xstrdup("");
		e->rcpts[i].status = xstrdup("");
	}

	/* 1. the message */
	snprintf(tmp, sizeof(tmp), "%s/tmp/%s.msg", q->dir, e->id);
	snprintf(dst, sizeof(dst), "%s/%s.msg", q->dir, e->id);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		err = ROOST_EIO;
		goto fail;
	}
	err = copy_message(fd, sub);
	if (err == 0 && q->sync && fsync(fd) != 0)
		err = ROOST_EIO;
	if (close(fd) != 0 && err == 0)
		err = ROOST_EIO;
	fd = -1;
	if (err == 0 && rename(tmp, dst) != 0)
		err = ROOST_EIO;
	if (err == 0 && q->sync)
		err = fdio_fsync_dir(q->dir);
	if (err != 0) {
		log_error("event=queue-write id=%s path=%s error=\"%s\"", e->id, dst,
		          strerror(errno));
		unlink(tmp);
		unlink(dst);
		goto fail;
	}
	/* 2. the envelope: from here on the entry exists */
	if ((err = queue_entry_save(q, e)) != 0) {
		unlink(dst);
		goto fail;
	}
	memcpy(id_r, e->id, QUEUE_ID_LEN);
	pthread_mutex_lock(&q->mu);
	e->next = q->pending;
	q->pending = e;
	pthread_mutex_unlock(&q->mu);
	buf_free(&b);
	return 0;
fail:
	buf_free(&b);
	queue_entry_free(&e);
	return err;
}

void
queue_commit(struct queue *q, const char *id, bool keep)
{
	struct queue_entry **pp, *e = NULL;
	void (*fn)(void *) = NULL;
	void *arg = NULL;

	pthread_mutex_lock(&q->mu);
	for (pp = &q->pending; *pp != NULL; pp = &(*pp)->next) {
		if (strcmp((*pp)->id, id) == 0) {
			e = *pp;
			*pp = e->next;
			break;
		}
	}
	if (e != NULL && keep) {
		e->next = q->ready;
		q->ready = e;
		fn = q->notify;
		arg = q->notify_arg;
	}
	pthread_mutex_unlock(&q->mu);
	if (e != NULL && !keep) {
		queue_entry_remove(q, e);
		queue_entry_free(&e);
	}
	if (fn != NULL)
		fn(arg);
}

void
queue_set_notify(struct queue *q, void (*fn)(void *arg), void *arg)
{
	pthread_mutex_lock(&q->mu);
	q->notify = fn;
	q->notify_arg = arg;
	pthread_mutex_unlock(&q->mu);
}

struct queue_entry *
queue_take_new(struct queue *q)
{
	struct queue_entry *e;

	pthread_mutex_lock(&q->mu);
	e = q->ready;
	q->ready = NULL;
	pthread_mutex_unlock(&q->mu);
	return e;
}
