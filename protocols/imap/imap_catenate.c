/*
 * CATENATE (RFC 4469): the message of an APPEND built from TEXT literals and
 * URL parts. URLs are read through services/urlauth.c: the user's own
 * mailboxes (relative URLs against the selected one), and other users'
 * messages only through a URLAUTH-authorised URL. The parts are joined in
 * memory up to IMAP_SPOOL_AT, past that in an unlinked spool file, never
 * past the APPENDLIMIT; storage then takes the result as one message, so
 * it is stored whole or not at all.
 */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "roost/config.h"
#include "roost/error.h"
#include "roost/fdio.h"
#include "roost/imapurl.h"
#include "roost/log.h"
#include "roost/services.h"
#include "roost/urlauth.h"

#include "imap_impl.h"

bool
imap_catenate_syntax(const struct imap_arg *list)
{
	if (list->type != ARG_LIST || list->n == 0 || list->n % 2 != 0 ||
	    list->n / 2 > IMAP_CATENATE_MAX_PARTS)
		return false;
	for (size_t k = 0; k < list->n; k += 2) {
		const struct imap_arg *v = &list->list[k + 1];
		if (imap_arg_atom_eq(&list->list[k], "TEXT")) {
			if (v->type != ARG_LITERAL)
				return false;
		} else if (imap_arg_atom_eq(&list->list[k], "URL")) {
			/* an astring; a literal here is bytes only (APPEND's
			 * literals are not copied), never a literal8 */
			bool lit = v->type == ARG_LITERAL && !v->literal8 && v->fd < 0;
			if (!lit && !imap_arg_is_astring(v))
				return false;
		} else {
			return false;
		}
	}
	return true;
}

void
imap_catenate_free(struct imap_catenate *cat)
{
	buf_free(&cat->text);
	buf_free(&cat->reply);
	if (cat->fd >= 0)
		close(cat->fd);
	cat->fd = -1;
}

/* Add p[0..n) to the message: 0, ROOST_ETOOBIG past max, ROOST_EIO. */
static int
sink(struct imap_catenate *cat, const struct roost_config *cfg, const void *p, size_t n)
{
	if (n > cfg->imap_max_literal || cat->len > cfg->imap_max_literal - n)
		return ROOST_ETOOBIG;
	if (cat->fd < 0 && cat->text.len + n > IMAP_SPOOL_AT) {
		cat->fd = fdio_open_spool(cfg->data_dir, ".imap-catenate-");
		if (cat->fd < 0 || fdio_write_all(cat->fd, cat->text.data, cat->text.len) < 0) {
			log_error("event=imap_spool_failed dir=%s error=\"%s\"",
			          LOG_QUOTE(cfg->data_dir), strerror(errno));
			return ROOST_EIO;
		}
		buf_free(&cat->text);
	}
	if (cat->fd >= 0) {
		if (n > 0 && fdio_write_all(cat->fd, p, n) < 0) {
			log_error("event=imap_spool_failed dir=%s error=\"%s\"",
			          LOG_QUOTE(cfg->data_dir), strerror(errno));
			return ROOST_EIO;
		}
	} else if (n > 0) {
		buf_append(&cat->text, p, n);
	}
	cat->len += n;
	return 0;
}

/* A spooled TEXT literal: bytes [0, len) of fd. */
static int
sink_file(struct imap_catenate *cat, const struct roost_config *cfg, int fd, uint64_t len)
{
	uint8_t chunk[64 * 1024];
	uint64_t off = 0;

	while (off < len) {
		size_t want = len - off < sizeof(chunk) ? (size_t)(len - off) : sizeof(chunk);
		ssize_t got = pread(fd, chunk, want, (off_t)off);
		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0) {
			log_error("event=imap_spool_read_failed error=\"%s\"",
			          got < 0 ? strerror(errno) : "short file");
			return ROOST_EIO;
		}
		int rc = sink(cat, cfg, chunk, (size_t)got);
		if (rc < 0)
			return rc;
		off += (uint64_t)got;
	}
	return 0;
}

int
imap_catenate_build(struct imap_cmd *cmd, const struct imap_arg *list, struct imap_catenate *cat)
{
	struct imap_session *s = cmd->s;
	const struct roost_config *cfg = imap_cfg(s);
	const char *selected = s->state == IMAP_STATE_SELECTED ? s->view.name : NULL;
	int rc = 0;

	buf_init(&cat->text, 0);
	buf_init(&cat->reply, 0);
	cat->fd = -1;
	cat->len = 0;
	for (size_t k = 0; k < list->n && rc == 0; k += 2) {
		const struct imap_arg *v = &list->list[k + 1];
		if (imap_arg_atom_eq(&list->list[k], "TEXT")) {
			if (v->fd >= 0)
				rc = sink_file(cat, cfg, v->fd, v->len);
			else
				rc =
				    sink(cat, cfg,
				         v->raw != NULL ? v->raw : (const uint8_t *)v->str, v->len);
			if (rc == ROOST_ETOOBIG)
				buf_append_str(&cat->reply, "[TOOBIG] CATENATE message too big");
			continue;
		}
		/* A URL as a literal may reach here as bytes only (APPEND's
		 * literals are not copied): it must be text without NUL. */
		const char *url = v->str;
		if (url == NULL && v->len > IMAPURL_MAX) {
			buf_append_str(&cat->reply, "CATENATE URL cannot be read");
			rc = ROOST_EPERM;
			break;
		}
		if (url == NULL) {
			url = arena_strndup(&cmd->arena, v->raw, v->len);
			if (strlen(url) != v->len) {
				buf_append_str(&cat->reply, "Invalid URL");
				rc = ROOST_EINVAL;
				break;
			}
		}
		struct buf data = BUF_INIT(0);
		rc = urlauth_read(s->sv, s->user, selected, url, v->len, &data);
		if (rc == 0)
			rc = sink(cat, cfg, data.data, data.len);
		buf_free(&data);
		if (rc == ROOST_EPERM || rc == ROOST_ENOTFOUND) {
			/* RFC 4469 5: the URL that failed, as the client wrote it */
			imap_badurl_code(&cat->reply, url, v->len);
			buf_append_str(&cat->reply, "CATENATE URL cannot be read");
		} else if (rc == ROOST_ETOOBIG) {
			buf_append_str(&cat->reply, "[TOOBIG] CATENATE message too big");
		}
	}
	if (rc < 0 && cat->reply.len == 0)
		buf_append_str(&cat->reply, "[UNAVAILABLE] CATENATE failed, try again later");
	return rc;
}

void
imap_catenate_input(const struct imap_catenate *cat, struct msg_input *in)
{
	if (cat->fd >= 0) {
		in->data = NULL;
		in->fd = cat->fd;
	} else {
		in->data = cat->text.data;
		in->fd = -1;
	}
	in->len = (size_t)cat->len;
}
