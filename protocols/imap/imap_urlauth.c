/*
 * GENURLAUTH, RESETKEY and URLFETCH (RFC 4467), URLFETCH's BINARY and
 * BODYPARTSTRUCTURE (RFC 5524). Keys, tokens and the reading of URLs are
 * services/urlauth.c's; this file speaks IMAP.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "roost/conn.h"
#include "roost/error.h"
#include "roost/imapurl.h"
#include "roost/services.h"
#include "roost/urlauth.h"
#include "roost/xalloc.h"

#include "imap_impl.h"

void
imap_badurl_code(struct buf *b, const char *url, size_t len)
{
	/* url-resp-text: TEXT-CHAR but ']' (RFC 4469 5, errata 2002); a URL
	 * that cannot be written so is left out of the code. */
	if (len == 0 || len > IMAPURL_MAX)
		return;
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)url[i];
		if (ch < 0x20 || ch >= 0x7f || ch == ']')
			return;
	}
	buf_append_str(b, "[BADURL ");
	buf_append(b, url, len);
	buf_append_str(b, "] ");
}

void
cmd_genurlauth(struct imap_cmd *cmd)
{
	struct imap_session *s = cmd->s;
	const struct imap_arg *a = cmd->p.args;
	size_t n = cmd->p.n;

	if (n == 0 || n % 2 != 0) {
		imap_bad(cmd, "Usage: GENURLAUTH url mechanism [url mechanism ...]");
		return;
	}
	for (size_t i = 0; i < n; i += 2) {
		if (!imap_arg_is_astring(&a[i]) || a[i].str == NULL || a[i + 1].type != ARG_ATOM) {
			imap_bad(cmd, "Usage: GENURLAUTH url mechanism [url mechanism ...]");
			return;
		}
	}
	/* Every URL is signed before any is sent: one bad URL fails them all. */
	struct buf *urls = xcalloc(n / 2, sizeof(*urls));
	int rc = 0;
	size_t i;
	for (i = 0; i < n && rc == 0; i += 2) {
		buf_init(&urls[i / 2], 0);
		rc = urlauth_generate(s->sv, s->user, a[i].str, a[i].len, a[i + 1].str,
		                      &urls[i / 2]);
	}
	if (rc < 0) {
		const struct imap_arg *bad = &a[i - 2];
		struct buf t = BUF_INIT(0);
		if (rc == ROOST_ENOTSUP) {
			buf_append_str(&t, "Unknown URLAUTH mechanism");
		} else if (rc == ROOST_EIO || rc == ROOST_ETEMP) {
			buf_append_str(&t, "[UNAVAILABLE] Cannot generate URLAUTH now");
		} else {
			imap_badurl_code(&t, bad->str, bad->len);
			buf_append_str(&t, rc == ROOST_ENOTFOUND ? "No such mailbox"
			                                         : "Invalid URL for GENURLAUTH");
		}
		imap_tagged(cmd, "NO", "%s", buf_cstr(&t));
		buf_free(&t);
	} else {
		conn_write_str(cmd->c, "* GENURLAUTH");
		for (size_t k = 0; k < n / 2; k++) {
			conn_write_str(cmd->c, " ");
			imap_write_string(cmd->c, buf_cstr(&urls[k]), urls[k].len);
		}
		conn_write_str(cmd->c, "\r\n");
		imap_tagged(cmd, "OK", "GENURLAUTH completed");
	}
	for (size_t k = 0; k < n / 2; k++)
		buf_free(&urls[k]);
	free(urls);
}

void
cmd_resetkey(struct imap_cmd *cmd)
{
	struct imap_session *s = cmd->s;
	char *name = NULL;

	if (cmd->p.n > 0) {
		if (imap_mailbox_arg(cmd, &cmd->p.args[0], &name) < 0)
			return;
		for (size_t i = 1; i < cmd->p.n; i++) {
			if (!imap_arg_atom_eq(&cmd->p.args[i], "INTERNAL")) {
				imap_bad(cmd, "Unknown URLAUTH mechanism");
				return;
			}
		}
	}
	int rc = urlauth_reset(s->sv, s->user, name);
	if (rc < 0) {
		imap_reply_error(cmd, rc, NULL);
		return;
	}
	imap_tagged(cmd, "OK", "RESETKEY completed");
}

/* ------------------------------------------------------------------ */
/* URLFETCH                                                            */

enum {
	UF_BODY = 1 << 0,
	UF_BINARY = 1 << 1,
	UF_BODYPARTSTRUCTURE = 1 << 2,
};

/* Bytes of one result written per step before looking at the output
 * again: a large part goes out in slices as the client reads. */
#define UF_SLICE (256 * 1024)

struct urlfetch_state {
	size_t i;         /* the URL being answered */
	struct buf data;  /* its octets, being sent */
	size_t off;       /* of them sent */
	bool in_data;     /* data[off..] still to send */
	bool close_paren; /* then ")" (an extended item) */
};

static void
urlfetch_free(struct imap_cmd *cmd)
{
	struct urlfetch_state *st = cmd->state;
	if (st == NULL)
		return;
	buf_free(&st->data);
	free(st);
	cmd->state = NULL;
}

/* The URL of argument a and its RFC 5524 parameters. */
static const struct imap_arg *
urlfetch_item(const struct imap_arg *a, unsigned *params_r)
{
	unsigned params = 0;

	if (a->type != ARG_LIST) {
		*params_r = 0;
		return a;
	}
	for (size_t k = 1; k < a->n; k++) {
		if (imap_arg_atom_eq(&a->list[k], "BODY"))
			params |= UF_BODY;
		else if (imap_arg_atom_eq(&a->list[k], "BINARY"))
			params |= UF_BINARY;
		else if (imap_arg_atom_eq(&a->list[k], "BODYPARTSTRUCTURE"))
			params |= UF_BODYPARTSTRUCTURE;
	}
	*params_r = params;
	return &a->list[0];
}

/* Start answering URL i: write it and what precedes its data. */
static void
urlfetch_start(struct imap_cmd *cmd, struct urlfetch_state *st)
{
	struct imap_session *s = cmd->s;
	unsigned params;
	const struct imap_arg *u = urlfetch_item(&cmd->p.args[st->i], &params);
	bool extended = cmd->p.args[st->i].type == ARG_LIST;
	struct buf bs = BUF_INIT(0);
	int rc;

	conn_write_str(cmd->c, " ");
	imap_write_string(cmd->c, u->str, u->len);
	buf_reset(&st->data);
	st->off = 0;
	if (!extended) {
		rc = urlauth_fetch(s->sv, s->user, URLAUTH_VIA_IMAP, u->str, u->len, &st->data);
	} else {
		bool want_data = (params & (UF_BODY | UF_BINARY)) != 0;
		rc = urlauth_fetch_part(s->sv, s->user, URLAUTH_VIA_IMAP, u->str, u->len,
		                        (params & UF_BINARY) != 0, want_data ? &st->data : NULL,
		                        (params & UF_BODYPARTSTRUCTURE) ? &bs : NULL);
	}
	if (rc < 0) {
		conn_write_str(cmd->c, " NIL");
		buf_free(&bs);
		return;
	}
	if (!extended) {
		conn_printf(cmd->c, " {%zu}\r\n", st->data.len);
		st->in_data = true;
		st->close_paren = false;
		return;
	}
	if (params & UF_BODYPARTSTRUCTURE) {
		conn_write_str(cmd->c, " (BODYPARTSTRUCTURE ");
		conn_write(cmd->c, bs.data, bs.len);
		conn_write_str(cmd->c, ")");
	}
	buf_free(&bs);
	if (params & UF_BINARY) {
		/* literal8: the decoded octets may hold NUL */
		conn_printf(cmd->c, " (BINARY ~{%zu}\r\n", st->data.len);
	} else if (params & UF_BODY) {
		conn_printf(cmd->c, " (BODY {%zu}\r\n", st->data.len);
	} else {
		return;
	}
	st->in_data = true;
	st->close_paren = true;
}

static void
urlfetch_step(struct imap_cmd *cmd)
{
	struct urlfetch_state *st = cmd->state;

	for (;;) {
		if (conn_output_full(cmd->c)) {
			imap_yield(cmd, urlfetch_step);
			return;
		}
		if (st->in_data) {
			size_t n = st->data.len - st->off;
			if (n > UF_SLICE)
				n = UF_SLICE;
			if (n > 0)
				conn_write(cmd->c, st->data.data + st->off, n);
			st->off += n;
			if (st->off < st->data.len)
				continue;
			if (st->close_paren)
				conn_write_str(cmd->c, ")");
			st->in_data = false;
			buf_free(&st->data);
			st->i++;
			continue;
		}
		if (st->i == cmd->p.n)
			break;
		urlfetch_start(cmd, st);
		if (!st->in_data)
			st->i++;
	}
	conn_write_str(cmd->c, "\r\n");
	imap_tagged(cmd, "OK", "URLFETCH completed");
}

void
cmd_urlfetch(struct imap_cmd *cmd)
{
	const struct imap_arg *a = cmd->p.args;

	if (cmd->p.n == 0) {
		imap_bad(cmd, "Usage: URLFETCH url...");
		return;
	}
	for (size_t i = 0; i < cmd->p.n; i++) {
		const struct imap_arg *u = &a[i];
		if (a[i].type == ARG_LIST) {
			if (a[i].n < 2) {
				imap_bad(cmd, "Usage: URLFETCH (url param...)");
				return;
			}
			u = &a[i].list[0];
			for (size_t k = 1; k < a[i].n; k++) {
				const struct imap_arg *p = &a[i].list[k];
				if (!imap_arg_atom_eq(p, "BODY") &&
				    !imap_arg_atom_eq(p, "BINARY") &&
				    !imap_arg_atom_eq(p, "BODYPARTSTRUCTURE")) {
					imap_bad(cmd, "Unknown URLFETCH parameter");
					return;
				}
			}
			unsigned params;
			urlfetch_item(&a[i], &params);
			if ((params & UF_BODY) && (params & UF_BINARY)) {
				imap_bad(cmd, "URLFETCH takes BODY or BINARY, not both");
				return;
			}
		}
		if (!imap_arg_is_astring(u) || u->str == NULL) {
			imap_bad(cmd, "Invalid URL argument");
			return;
		}
	}
	struct urlfetch_state *st = xcalloc(1, sizeof(*st));
	buf_init(&st->data, 0);
	cmd->state = st;
	cmd->state_free = urlfetch_free;
	conn_write_str(cmd->c, "* URLFETCH");
	urlfetch_step(cmd);
}
