/*
 * The envelope file, <id>.env: an entry written as text and read back,
 * each field percent-encoded, any unknown or missing line making the file
 * corrupt (the format is described at the top of queue.c).
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

void
queue_env_serialize(const struct queue_entry *e, struct buf *b)
{
	buf_printf(b, "roost-queue 1\nid %s\ncreated %lld\nsender ", e->id, (long long)e->created);
	put_field(b, e->sender);
	buf_append_str(b, "\nuser ");
	put_field(b, e->user);
	buf_append_str(b, "\nenvid ");
	put_field(b, e->envid);
	buf_append_str(b, "\nret ");
	put_field(b, e->ret);
	buf_printf(b, "\nflags%s%s%s%s%s%s\n", e->smtputf8 ? " smtputf8" : "",
	           e->body_8bit ? " 8bitmime" : "", e->binarymime ? " binarymime" : "",
	           e->requiretls ? " requiretls" : "", e->tls_optional ? " tls-optional" : "",
	           !e->smtputf8 && !e->body_8bit && !e->binarymime && !e->requiretls &&
	                   !e->tls_optional
	               ? " -"
	               : "");
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
				else if (strcmp(tok[i], "binarymime") == 0)
					e->binarymime = true;
				else if (strcmp(tok[i], "requiretls") == 0)
					e->requiretls = true;
				else if (strcmp(tok[i], "tls-optional") == 0)
					e->tls_optional = true;
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
