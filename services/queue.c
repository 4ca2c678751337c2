/*
 * The outbound queue on disk. The envelope format is read and written in
 * queue_env.c, new entries are made in queue_submit.c.
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
 *       flags <smtputf8|8bitmime|binarymime|requiretls|tls-optional|-> ...
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

#include "queue_impl.h"

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
		log_error("event=queue_write path=%s error=\"%s\"", dst, strerror(errno));
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

	queue_env_serialize(e, &b);
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
		log_error("event=queue_remove path=%s error=\"%s\"", path, strerror(errno));
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
			log_error("event=queue_remove path=%s error=\"%s\"", path, strerror(errno));
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
	if (k > 1)
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

static int
mkdir_p(const char *path)
{
	if (mkdir(path, 0700) == 0 || errno == EEXIST)
		return 0;
	log_error("event=queue_open path=%s error=\"%s\"", path, strerror(errno));
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
			log_error("event=queue_recover id=%s status=corrupt", ids[i]);
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
				log_info("event=queue_recover id=%s status=orphan-removed",
				         msgs[i]);
			}
		}
	}
	log_info("event=queue_recover entries=%zu", n);
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
