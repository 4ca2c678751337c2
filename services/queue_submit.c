/*
 * New queue entries: the message and its envelope written durably
 * (queue_submit()), then committed or dropped by the submitter
 * (queue_commit()) and taken by the delivery engine (queue_take_new()).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
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

/* The value of a header field in a header block, unfolded: does it say
 * "No" (RFC 8689 5: the only value defined), case-insensitive, blanks
 * around it? */
static bool
value_is_no(const uint8_t *v, size_t len)
{
	size_t i = 0, n = 0;
	char w[3];

	for (; i < len; i++) {
		if (v[i] == ' ' || v[i] == '\t' || v[i] == '\r' || v[i] == '\n')
			continue;
		if (n == 2)
			return false;
		w[n++] = (char)v[i];
	}
	return n == 2 && (w[0] == 'N' || w[0] == 'n') && (w[1] == 'O' || w[1] == 'o');
}

/* Does the message's header carry "TLS-Required: No"? Only its first
 * 64 KiB are looked at (a header field past them is not one a sender's
 * program wrote). */
static bool
tls_required_no(const struct queue_submission *sub)
{
	static const char name[] = "tls-required:";
	uint8_t *head;
	size_t len = sub->len < 65536 ? (size_t)sub->len : 65536, at = 0;
	bool found = false;

	if (len == 0)
		return false;
	head = xmalloc(len);
	if (sub->fd < 0) {
		memcpy(head, sub->data, len);
	} else {
		ssize_t r = pread(sub->fd, head, len, (off_t)sub->offset);

		len = r > 0 ? (size_t)r : 0;
	}
	while (at < len && head[at] != '\r' && head[at] != '\n') {
		size_t end = at;

		/* The field runs to a line end not followed by a blank. */
		for (;;) {
			uint8_t *nl = memchr(head + end, '\n', len - end);

			end = nl == NULL ? len : (size_t)(nl - head) + 1;
			if (end >= len || (head[end] != ' ' && head[end] != '\t'))
				break;
		}
		if (end - at > sizeof(name) - 1 &&
		    strncasecmp((const char *)head + at, name, sizeof(name) - 1) == 0 &&
		    value_is_no(head + at + sizeof(name) - 1, end - at - (sizeof(name) - 1)))
			found = true;
		at = end;
	}
	free(head);
	return found;
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
	e->binarymime = sub->binarymime;
	e->requiretls = sub->requiretls;
	/* RFC 8689 4.2.2: REQUIRETLS outweighs the header field. */
	e->tls_optional = !sub->requiretls && tls_required_no(sub);
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
		log_error("event=queue_write id=%s path=%s error=\"%s\"", e->id, dst,
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
