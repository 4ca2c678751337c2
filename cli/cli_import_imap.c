/*
 * `roost import USER imap[s]://login@host[:port]`: copy every folder of a
 * running IMAP server (RFC 3501/9051 client side, the commands every
 * server has: CAPABILITY, STARTTLS, LOGIN, LIST, EXAMINE, UID FETCH).
 *
 * imaps:// is TLS from the start (port 993), imap:// (port 143) upgrades
 * with STARTTLS when the server offers it; the certificate is checked
 * against the system's CAs and the host name unless --insecure. The
 * password is the first line of --password-file, or of stdin.
 *
 * Per folder: EXAMINE (nothing changes at the source, \Seen included, as
 * BODY.PEEK leaves it), the list of UIDs with FLAGS, INTERNALDATE and
 * RFC822.SIZE, then each message the target does not have yet with
 * BODY.PEEK[] (the import sink decides: by UID when the target mailbox
 * took the folder's UIDVALIDITY, by content otherwise), so running it
 * again copies only what is new.
 *
 * The client itself (transport, TLS, responses, tokens) is cli_imapc.c.
 */
#include <errno.h>
#include <netdb.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "roost/date.h"
#include "roost/error.h"
#include "roost/mutf7.h"
#include "roost/storage.h"
#include "roost/xalloc.h"

#include "cli_imapc.h"
#include "cli_transfer.h"

bool import_imap_insecure;

/* ---- folders ---- */

struct folder {
	char *server_name; /* as the server spells it (for EXAMINE) */
	char *name;        /* ours: '/' separated, UTF-8 */
};

struct folder_list {
	struct folder *v;
	size_t n, cap;
};

static int
on_list(struct imapc *c, void *arg)
{
	struct folder_list *fl = arg;
	struct imapc_lex l = {(const char *)c->resp.data, (const char *)c->resp.data + c->resp.len};
	struct buf sb = BUF_INIT(IMAPC_MAX_LINE), name = BUF_INIT(IMAPC_MAX_LINE);
	const char *s;
	size_t n;
	char sep = '\0';
	bool noselect = false;
	enum imapc_tok t;

	if (imapc_lex_next(&l, &s, &n, &sb) != IMAPC_ATOM ||
	    imapc_lex_next(&l, &s, &n, &sb) != IMAPC_ATOM || !imapc_is_word(s, n, "LIST") ||
	    imapc_lex_next(&l, &s, &n, &sb) != IMAPC_LPAREN)
		goto out;
	while ((t = imapc_lex_next(&l, &s, &n, &sb)) == IMAPC_ATOM) {
		if (imapc_is_word(s, n, "\\Noselect") || imapc_is_word(s, n, "\\NonExistent"))
			noselect = true;
	}
	if (t != IMAPC_RPAREN)
		goto out;
	t = imapc_lex_next(&l, &s, &n, &sb);
	if (t == IMAPC_STRING && n == 1)
		sep = s[0];
	else if (t != IMAPC_NIL)
		goto out;
	t = imapc_lex_next(&l, &s, &n, &sb);
	if ((t != IMAPC_STRING && t != IMAPC_ATOM) || noselect || n == 0)
		goto out;
	if (fl->n == fl->cap) {
		fl->cap = fl->cap == 0 ? 16 : fl->cap * 2;
		fl->v = xreallocarray(fl->v, fl->cap, sizeof(*fl->v));
	}
	fl->v[fl->n].server_name = xstrndup(s, n);
	/* ours: the separator becomes '/', modified UTF-7 decoded */
	{
		struct buf raw = BUF_INIT(IMAPC_MAX_LINE);

		for (size_t i = 0; i < n; i++)
			buf_append_byte(&raw, sep != '\0' && s[i] == sep ? '/' : (uint8_t)s[i]);
		if (c->utf8 || mutf7_decode((const char *)raw.data, raw.len, &name) != 0) {
			buf_reset(&name);
			buf_append(&name, raw.data, raw.len);
		}
		buf_free(&raw);
	}
	if (strcasecmp(buf_cstr(&name), "INBOX") == 0) {
		buf_reset(&name);
		buf_append_str(&name, "INBOX");
	}
	fl->v[fl->n].name = xstrdup(buf_cstr(&name));
	fl->n++;
out:
	buf_free(&sb);
	buf_free(&name);
	return 0;
}

static int
on_examine(struct imapc *c, void *arg)
{
	uint32_t *uidvalidity = arg;
	const char *s = (const char *)c->resp.data;
	const char *p = memmem(s, c->resp.len, "[UIDVALIDITY ", 13);

	if (p != NULL)
		*uidvalidity = (uint32_t)strtoul(p + 13, NULL, 10);
	return 0;
}

/* ---- messages ---- */

struct remote_msg {
	uint32_t uid;
	uint32_t flags;
	char **keywords;
	size_t n_keywords;
	int64_t date;
	uint64_t size;
	/* BODY[] when fetched: borrowed from the response */
	const char *body;
	size_t body_len;
};

struct remote_list {
	struct remote_msg *v;
	size_t n, cap;
	struct remote_msg *one; /* fetching one body: where it goes */
};

static void
remote_msg_free(struct remote_msg *m)
{
	for (size_t i = 0; i < m->n_keywords; i++)
		free(m->keywords[i]);
	free(m->keywords);
}

/* "17-Jul-1996 02:44:25 -0700" */
static bool
parse_internaldate(const char *s, size_t n, int64_t *t_r)
{
	static const char months[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
	char tmp[40], mon[4];
	int d, y, hh, mm, ss, z, consumed = 0;
	const char *m;

	if (n >= sizeof(tmp))
		return false;
	memcpy(tmp, s, n);
	tmp[n] = '\0';
	if (sscanf(tmp, " %d-%3s-%d %d:%d:%d %d%n", &d, mon, &y, &hh, &mm, &ss, &z, &consumed) !=
	        7 ||
	    consumed == 0 || (m = strstr(months, mon)) == NULL || strlen(mon) != 3 ||
	    (m - months) % 3 != 0 || d < 1 || d > 31 || hh > 23 || mm > 59 || ss > 60)
		return false;
	{
		int zs = z < 0 ? -1 : 1, za = z < 0 ? -z : z;

		*t_r =
		    date_days_from_civil(y, (unsigned)((m - months) / 3 + 1), (unsigned)d) * 86400 +
		    hh * 3600 + mm * 60 + ss - zs * ((za / 100) * 3600 + (za % 100) * 60);
	}
	return true;
}

static int
on_fetch(struct imapc *c, void *arg)
{
	struct remote_list *rl = arg;
	struct imapc_lex l = {(const char *)c->resp.data, (const char *)c->resp.data + c->resp.len};
	struct buf sb = BUF_INIT(IMAPC_MAX_LINE);
	struct remote_msg m = {0};
	const char *s;
	size_t n;
	enum imapc_tok t;

	if (imapc_lex_next(&l, &s, &n, &sb) != IMAPC_ATOM ||
	    imapc_lex_next(&l, &s, &n, &sb) != IMAPC_ATOM ||
	    imapc_lex_next(&l, &s, &n, &sb) != IMAPC_ATOM || !imapc_is_word(s, n, "FETCH") ||
	    imapc_lex_next(&l, &s, &n, &sb) != IMAPC_LPAREN)
		goto out;
	while ((t = imapc_lex_next(&l, &s, &n, &sb)) == IMAPC_ATOM) {
		if (imapc_is_word(s, n, "UID") && imapc_lex_next(&l, &s, &n, &sb) == IMAPC_ATOM) {
			m.uid = (uint32_t)strtoul(s, NULL, 10);
		} else if (imapc_is_word(s, n, "RFC822.SIZE") &&
		           imapc_lex_next(&l, &s, &n, &sb) == IMAPC_ATOM) {
			m.size = strtoull(s, NULL, 10);
		} else if (imapc_is_word(s, n, "INTERNALDATE")) {
			if (imapc_lex_next(&l, &s, &n, &sb) == IMAPC_STRING)
				(void)parse_internaldate(s, n, &m.date);
		} else if (imapc_is_word(s, n, "FLAGS")) {
			if (imapc_lex_next(&l, &s, &n, &sb) != IMAPC_LPAREN)
				goto out;
			while ((t = imapc_lex_next(&l, &s, &n, &sb)) == IMAPC_ATOM) {
				if (imapc_is_word(s, n, "\\Seen"))
					m.flags |= MSG_SEEN;
				else if (imapc_is_word(s, n, "\\Answered"))
					m.flags |= MSG_ANSWERED;
				else if (imapc_is_word(s, n, "\\Flagged"))
					m.flags |= MSG_FLAGGED;
				else if (imapc_is_word(s, n, "\\Deleted"))
					m.flags |= MSG_DELETED;
				else if (imapc_is_word(s, n, "\\Draft"))
					m.flags |= MSG_DRAFT;
				else if (s[0] != '\\' && m.n_keywords < STORAGE_MAX_KEYWORDS) {
					char *kw = xstrndup(s, n);

					if (storage_keyword_valid(kw)) {
						m.keywords = xreallocarray(
						    m.keywords, m.n_keywords + 1, sizeof(char *));
						m.keywords[m.n_keywords++] = kw;
					} else {
						free(kw);
					}
				}
			}
			if (t != IMAPC_RPAREN)
				goto out;
		} else if (n >= 6 && strncasecmp(s, "BODY[", 5) == 0) {
			t = imapc_lex_next(&l, &s, &n, &sb);
			if (t == IMAPC_STRING && rl->one != NULL) {
				/* literal: borrowed from c->resp until the next read */
				rl->one->body = s;
				rl->one->body_len = n;
			}
		} else {
			/* an item we did not ask for: skip its value */
			int depth = 0;

			do {
				t = imapc_lex_next(&l, &s, &n, &sb);
				if (t == IMAPC_LPAREN)
					depth++;
				else if (t == IMAPC_RPAREN)
					depth--;
			} while (depth > 0 && t != IMAPC_END && t != IMAPC_BAD);
		}
	}
	if (rl->one == NULL && m.uid != 0) {
		if (rl->n == rl->cap) {
			rl->cap = rl->cap == 0 ? 256 : rl->cap * 2;
			rl->v = xreallocarray(rl->v, rl->cap, sizeof(*rl->v));
		}
		rl->v[rl->n++] = m;
		memset(&m, 0, sizeof(m));
	}
out:
	remote_msg_free(&m);
	buf_free(&sb);
	return 0;
}

/* A FETCH response's body lives in c->resp, which the tagged OK that
 * follows overwrites: on_fetch_body copies it out first. */
static int
on_fetch_body(struct imapc *c, void *arg)
{
	struct remote_list *rl = arg;
	int rc = on_fetch(c, arg);

	if (rl->one != NULL && rl->one->body != NULL &&
	    (const uint8_t *)rl->one->body >= c->resp.data &&
	    (const uint8_t *)rl->one->body < c->resp.data + c->resp.len)
		rl->one->body = xmemdup(rl->one->body, rl->one->body_len + 1);
	return rc;
}

static int
copy_folder(struct imapc *c, struct import_ctx *ic, const struct folder *f, const char *prefix)
{
	struct buf cmd = BUF_INIT(0);
	struct remote_list rl = {0};
	struct import_box box;
	uint32_t uidvalidity = 0;
	char tag[16], *target;
	uint64_t total = 0;
	int rc;

	if (prefix == NULL)
		target = xstrdup(f->name);
	else if (strcmp(f->name, "INBOX") == 0)
		target = xstrdup(prefix);
	else {
		size_t tl = strlen(prefix) + strlen(f->name) + 2;

		target = xmalloc(tl);
		snprintf(target, tl, "%s/%s", prefix, f->name);
	}
	if (!storage_name_valid(target)) {
		fprintf(stderr, "roost import: %s: folder name not usable, skipped\n", f->name);
		free(target);
		return ROOST_EINVAL;
	}
	if ((rc = imapc_quote(&cmd, f->server_name)) != 0 ||
	    (rc = imapc_send(c, tag, sizeof(tag), "EXAMINE %s", buf_cstr(&cmd))) != 0 ||
	    (rc = imapc_wait(c, tag, on_examine, &uidvalidity)) != 0)
		goto out;
	if ((rc = imapc_send(c, tag, sizeof(tag),
	                     "UID FETCH 1:* (UID FLAGS INTERNALDATE RFC822.SIZE)")) != 0 ||
	    (rc = imapc_wait(c, tag, on_fetch, &rl)) != 0)
		goto out;
	for (size_t i = 0; i < rl.n; i++)
		total += rl.v[i].size;
	progress_total(&ic->prog, rl.n, total);
	if ((rc = import_box_begin(ic, target, uidvalidity, &box)) != 0) {
		fprintf(stderr, "roost import: %s: %s\n", target, roost_strerror(rc));
		goto out;
	}
	for (size_t i = 0; i < rl.n && rc == 0; i++) {
		struct remote_msg *m = &rl.v[i];
		struct import_msg im = {0};
		int e;

		if (import_box_has_uid(&box, m->uid)) {
			ic->skipped++;
			progress_step(&ic->prog, m->size);
			continue;
		}
		rl.one = m;
		m->body = NULL;
		if ((rc = imapc_send(c, tag, sizeof(tag), "UID FETCH %u (UID BODY.PEEK[])",
		                     m->uid)) != 0 ||
		    (rc = imapc_wait(c, tag, on_fetch_body, &rl)) != 0)
			break;
		if (m->body == NULL) {
			/* expunged at the source meanwhile */
			progress_step(&ic->prog, m->size);
			continue;
		}
		im.data = (const uint8_t *)m->body;
		im.len = m->body_len;
		im.flags = m->flags;
		im.keywords = (const char *const *)m->keywords;
		im.n_keywords = m->n_keywords;
		im.date = m->date;
		im.src_uid = m->uid;
		e = import_box_add(&box, &im);
		free((void *)m->body);
		m->body = NULL;
		if (e < 0) {
			fprintf(stderr, "roost import: %s: UID %u: %s\n", target, m->uid,
			        roost_strerror(e));
			ic->failed++;
		}
		progress_step(&ic->prog, m->size);
	}
	rl.one = NULL;
	import_box_end(&box);
out:
	for (size_t i = 0; i < rl.n; i++)
		remote_msg_free(&rl.v[i]);
	free(rl.v);
	buf_free(&cmd);
	free(target);
	return rc;
}

static char *
read_password(const char *file)
{
	FILE *f = file != NULL ? fopen(file, "re") : stdin;
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;

	if (f == NULL) {
		fprintf(stderr, "roost import: %s: %s\n", file, strerror(errno));
		return NULL;
	}
	n = getline(&line, &cap, f);
	if (file != NULL)
		fclose(f);
	if (n <= 0) {
		free(line);
		fprintf(stderr, "roost import: no password given (--password-file or stdin)\n");
		return NULL;
	}
	line[strcspn(line, "\r\n")] = '\0';
	return line;
}

int
import_imap(struct import_ctx *ic, const char *url, const char *prefix, const char *password_file)
{
	struct imapc c = {.fd = -1,
	                  .resp = BUF_INIT(IMAPC_MAX_RESPONSE + IMAPC_MAX_LINE),
	                  .insecure = import_imap_insecure};
	bool tls = strncmp(url, "imaps://", 8) == 0;
	const char *rest = url + (tls ? 8 : 7), *at = strrchr(rest, '@');
	char *login = NULL, *host = NULL, *pass = NULL, port[8];
	struct folder_list fl = {0};
	struct buf cmd = BUF_INIT(0);
	char tag[16];
	int rc = ROOST_EINVAL;

	if (at == NULL || at == rest || at[1] == '\0') {
		fprintf(stderr, "roost import: %s: give imap[s]://user@host[:port]\n", url);
		return ROOST_EINVAL;
	}
	login = xstrndup(rest, (size_t)(at - rest));
	host = xstrdup(at + 1);
	host[strcspn(host, "/")] = '\0';
	snprintf(port, sizeof(port), "%s", tls ? "993" : "143");
	{
		char *colon = strrchr(host, ':');

		if (colon != NULL && strchr(host, ']') < colon) {
			snprintf(port, sizeof(port), "%s", colon + 1);
			*colon = '\0';
		}
		if (host[0] == '[') {
			memmove(host, host + 1, strlen(host));
			host[strcspn(host, "]")] = '\0';
		}
	}
	/* %40 for an '@' in the login */
	for (char *p = login; (p = strstr(p, "%40")) != NULL; p++) {
		*p = '@';
		memmove(p + 1, p + 3, strlen(p + 3) + 1);
	}
	if ((pass = read_password(password_file)) == NULL)
		goto out;
	c.host = host;
	if ((rc = imapc_connect(&c, host, port)) != 0)
		goto out;
	if (tls && (rc = imapc_tls_start(&c)) != 0)
		goto out;
	if ((rc = imapc_read_response(&c)) != 0 || c.resp.len < 4 ||
	    strncasecmp((char *)c.resp.data, "* OK", 4) != 0) {
		fprintf(stderr, "roost import: %s: no IMAP greeting\n", host);
		rc = ROOST_EPROTO;
		goto out;
	}
	if ((rc = imapc_capability(&c)) != 0)
		goto out;
	if (!tls && c.starttls) {
		if ((rc = imapc_send(&c, tag, sizeof(tag), "STARTTLS")) != 0 ||
		    (rc = imapc_wait(&c, tag, NULL, NULL)) != 0 || (rc = imapc_tls_start(&c)) != 0)
			goto out;
		if ((rc = imapc_capability(&c)) != 0)
			goto out;
	}
	if ((rc = imapc_quote(&cmd, login)) != 0 || (rc = buf_append_byte(&cmd, ' ')) != 0 ||
	    (rc = imapc_quote(&cmd, pass)) != 0) {
		fprintf(stderr, "roost import: the login or password holds a line break\n");
		goto out;
	}
	if ((rc = imapc_send(&c, tag, sizeof(tag), "LOGIN %s", buf_cstr(&cmd))) != 0 ||
	    (rc = imapc_wait(&c, tag, NULL, NULL)) != 0) {
		fprintf(stderr, "roost import: %s: login as %s refused\n", host, login);
		goto out;
	}
	if ((rc = imapc_send(&c, tag, sizeof(tag), "LIST \"\" \"*\"")) != 0 ||
	    (rc = imapc_wait(&c, tag, on_list, &fl)) != 0)
		goto out;
	for (size_t i = 0; i < fl.n; i++) {
		int e = copy_folder(&c, ic, &fl.v[i], prefix);

		if (e == ROOST_EIO || e == ROOST_ECLOSED || e == ROOST_EPROTO ||
		    e == ROOST_ETOOBIG) {
			rc = e;
			break;
		}
	}
	if (rc == 0 && imapc_send(&c, tag, sizeof(tag), "LOGOUT") == 0)
		(void)imapc_wait(&c, tag, NULL, NULL);
out:
	if (rc == ROOST_ECLOSED || rc == ROOST_EIO)
		fprintf(stderr, "roost import: connection to %s lost\n", host);
	for (size_t i = 0; i < fl.n; i++) {
		free(fl.v[i].server_name);
		free(fl.v[i].name);
	}
	free(fl.v);
	if (pass != NULL) {
		explicit_bzero(pass, strlen(pass));
		free(pass);
	}
	if (cmd.data != NULL)
		explicit_bzero(cmd.data, cmd.cap);
	buf_free(&cmd);
	imapc_close(&c);
	free(login);
	free(host);
	return rc;
}
