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
 * Blocking I/O with a timeout on a socket of its own: this is a command,
 * not the server, and nothing else waits for it.
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

#include "cli_transfer.h"

#define IMAP_TIMEOUT_SECS 120
#define IMAP_MAX_LINE (64u << 10)
/* A response holds at most one message plus its line. */
#define IMAP_MAX_RESPONSE ((size_t)1 << 30)

bool import_imap_insecure;

struct imapc {
	int fd;
	SSL_CTX *ctx;
	SSL *ssl;
	const char *host;
	unsigned tag;
	uint8_t in[16384];
	size_t in_pos, in_len;
	struct buf resp; /* the current response: lines and literals */
	bool starttls, utf8;
};

/* ---- transport ---- */

static int
io_fill(struct imapc *c)
{
	ssize_t n;

	if (c->ssl != NULL) {
		int r = SSL_read(c->ssl, c->in, sizeof(c->in));

		n = r > 0 ? r : -1;
	} else {
		do
			n = read(c->fd, c->in, sizeof(c->in));
		while (n < 0 && errno == EINTR);
	}
	if (n <= 0)
		return n == 0 ? ROOST_ECLOSED : ROOST_EIO;
	c->in_pos = 0;
	c->in_len = (size_t)n;
	return 0;
}

static int
io_write(struct imapc *c, const void *data, size_t len)
{
	const uint8_t *p = data;

	while (len > 0) {
		ssize_t n;

		if (c->ssl != NULL) {
			int r = SSL_write(c->ssl, p, (int)(len > 65536 ? 65536 : len));

			n = r > 0 ? r : -1;
		} else {
			n = write(c->fd, p, len);
			if (n < 0 && errno == EINTR)
				continue;
		}
		if (n <= 0)
			return ROOST_EIO;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Append one line (with its CRLF) to c->resp. */
static int
read_line(struct imapc *c)
{
	size_t start = c->resp.len;
	int rc;

	for (;;) {
		uint8_t *nl;
		size_t n;

		if (c->in_pos == c->in_len && (rc = io_fill(c)) != 0)
			return rc;
		nl = memchr(c->in + c->in_pos, '\n', c->in_len - c->in_pos);
		n = nl == NULL ? c->in_len - c->in_pos : (size_t)(nl - (c->in + c->in_pos)) + 1;
		if (c->resp.len - start + n > IMAP_MAX_LINE)
			return ROOST_EPROTO;
		if ((rc = buf_append(&c->resp, c->in + c->in_pos, n)) != 0)
			return rc;
		c->in_pos += n;
		if (nl != NULL)
			return 0;
	}
}

static int
read_bytes(struct imapc *c, size_t len)
{
	int rc;

	if ((rc = buf_reserve(&c->resp, len)) != 0)
		return rc;
	while (len > 0) {
		size_t n;

		if (c->in_pos == c->in_len && (rc = io_fill(c)) != 0)
			return rc;
		n = c->in_len - c->in_pos < len ? c->in_len - c->in_pos : len;
		buf_append(&c->resp, c->in + c->in_pos, n);
		c->in_pos += n;
		len -= n;
	}
	return 0;
}

/* One whole response (a line and the literals it announces) into c->resp. */
static int
read_response(struct imapc *c)
{
	int rc;

	buf_reset(&c->resp);
	for (;;) {
		size_t end, open;
		unsigned long long n = 0;

		if ((rc = read_line(c)) != 0)
			return rc;
		end = c->resp.len;
		if (end < 2 || c->resp.data[end - 2] != '\r')
			return ROOST_EPROTO;
		end -= 2;
		if (end == 0 || c->resp.data[end - 1] != '}')
			return 0;
		open = end - 1;
		while (open > 0 && c->resp.data[open - 1] != '{')
			open--;
		if (open == 0)
			return 0;
		for (size_t i = open; i < end - 1; i++) {
			if (c->resp.data[i] < '0' || c->resp.data[i] > '9')
				return ROOST_EPROTO;
			n = n * 10 + (c->resp.data[i] - '0');
			if (n > IMAP_MAX_RESPONSE)
				return ROOST_ETOOBIG;
		}
		if ((rc = read_bytes(c, (size_t)n)) != 0)
			return rc;
	}
}

/* ---- tokens of a response ---- */

enum tok { T_END, T_ATOM, T_STRING, T_LPAREN, T_RPAREN, T_NIL, T_BAD };

struct lex {
	const char *p, *end;
};

/* Next token; strings (quoted or literal) unquoted into *s (borrowed from
 * the response or from sbuf). */
static enum tok
lex_next(struct lex *l, const char **s, size_t *n, struct buf *sbuf)
{
	while (l->p < l->end && *l->p == ' ')
		l->p++;
	if (l->p >= l->end || *l->p == '\r')
		return T_END;
	if (*l->p == '(') {
		l->p++;
		return T_LPAREN;
	}
	if (*l->p == ')') {
		l->p++;
		return T_RPAREN;
	}
	if (*l->p == '"') {
		buf_reset(sbuf);
		for (l->p++; l->p < l->end && *l->p != '"'; l->p++) {
			if (*l->p == '\\' && l->p + 1 < l->end)
				l->p++;
			if (*l->p == '\r' || *l->p == '\n')
				return T_BAD;
			buf_append_byte(sbuf, (uint8_t)*l->p);
		}
		if (l->p >= l->end)
			return T_BAD;
		l->p++;
		*s = sbuf->data != NULL ? (const char *)sbuf->data : "";
		*n = sbuf->len;
		return T_STRING;
	}
	if (*l->p == '{') {
		char *close;
		unsigned long long len = strtoull(l->p + 1, &close, 10);

		if (close >= l->end || *close != '}' || (size_t)(l->end - close) < 3 ||
		    len > (unsigned long long)(l->end - close - 3))
			return T_BAD;
		*s = close + 3;
		*n = (size_t)len;
		l->p = close + 3 + len;
		return T_STRING;
	}
	*s = l->p;
	/* an atom; "BODY[]" and "\Seen" included */
	while (l->p < l->end && *l->p != ' ' && *l->p != '(' && *l->p != ')' && *l->p != '\r') {
		if (*l->p == '[') {
			while (l->p < l->end && *l->p != ']')
				l->p++;
		}
		if (l->p < l->end)
			l->p++;
	}
	*n = (size_t)(l->p - *s);
	if (*n == 3 && strncasecmp(*s, "NIL", 3) == 0)
		return T_NIL;
	return T_ATOM;
}

static bool
is_word(const char *s, size_t n, const char *w)
{
	return strlen(w) == n && strncasecmp(s, w, n) == 0;
}

/* ---- commands ---- */

static int send_cmd(struct imapc *c, char *tag, size_t taglen, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int
send_cmd(struct imapc *c, char *tag, size_t taglen, const char *fmt, ...)
{
	struct buf b = BUF_INIT(0);
	va_list ap;
	int rc;

	snprintf(tag, taglen, "r%u", ++c->tag);
	buf_printf(&b, "%s ", tag);
	va_start(ap, fmt);
	buf_vprintf(&b, fmt, ap);
	va_end(ap);
	buf_append_str(&b, "\r\n");
	rc = io_write(c, b.data, b.len);
	buf_free(&b);
	return rc;
}

/* Is c->resp the tagged completion of tag? Then *ok_r says whether OK. */
static bool
tagged(struct imapc *c, const char *tag, bool *ok_r)
{
	size_t tl = strlen(tag);

	if (c->resp.len <= tl || memcmp(c->resp.data, tag, tl) != 0 || c->resp.data[tl] != ' ')
		return false;
	*ok_r = c->resp.len >= tl + 3 && strncasecmp((char *)c->resp.data + tl + 1, "OK", 2) == 0;
	return true;
}

typedef int untagged_fn(struct imapc *c, void *arg);

/* Read until tag completes, handing each untagged response to fn. */
static int
wait_tag(struct imapc *c, const char *tag, untagged_fn *fn, void *arg)
{
	bool ok;
	int rc;

	for (;;) {
		if ((rc = read_response(c)) != 0)
			return rc;
		if (tagged(c, tag, &ok)) {
			if (!ok) {
				fprintf(stderr, "roost import: server: %.*s", (int)c->resp.len,
				        (const char *)c->resp.data);
				return ROOST_EPROTO;
			}
			return 0;
		}
		if (c->resp.len > 2 && c->resp.data[0] == '*' && fn != NULL &&
		    (rc = fn(c, arg)) != 0)
			return rc;
	}
}

static int
on_capability(struct imapc *c, void *arg)
{
	const char *s = (const char *)c->resp.data;
	size_t n = c->resp.len;

	(void)arg;
	if (n > 13 && strncasecmp(s, "* CAPABILITY ", 13) == 0) {
		c->starttls = memmem(s, n, " STARTTLS", 9) != NULL;
		c->utf8 = memmem(s, n, " UTF8=ACCEPT", 12) != NULL;
	}
	return 0;
}

static int
tls_start(struct imapc *c)
{
	c->ctx = SSL_CTX_new(TLS_client_method());
	if (c->ctx == NULL)
		return ROOST_EIO;
	SSL_CTX_set_min_proto_version(c->ctx, TLS1_2_VERSION);
	if (!import_imap_insecure) {
		SSL_CTX_set_verify(c->ctx, SSL_VERIFY_PEER, NULL);
		SSL_CTX_set_default_verify_paths(c->ctx);
	}
	c->ssl = SSL_new(c->ctx);
	SSL_set_fd(c->ssl, c->fd);
	SSL_set_tlsext_host_name(c->ssl, c->host);
	if (!import_imap_insecure)
		SSL_set1_host(c->ssl, c->host);
	if (SSL_connect(c->ssl) != 1) {
		unsigned long e = ERR_get_error();

		fprintf(stderr, "roost import: TLS with %s failed: %s%s\n", c->host,
		        e != 0 ? ERR_reason_error_string(e) : "handshake",
		        import_imap_insecure ? "" : " (--insecure skips the certificate check)");
		return ROOST_EIO;
	}
	return 0;
}

static int
connect_to(struct imapc *c, const char *host, const char *port)
{
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res, *ai;
	struct timeval tv = {.tv_sec = IMAP_TIMEOUT_SECS};
	int err = getaddrinfo(host, port, &hints, &res);

	if (err != 0) {
		fprintf(stderr, "roost import: %s: %s\n", host, gai_strerror(err));
		return ROOST_ENOTFOUND;
	}
	c->fd = -1;
	for (ai = res; ai != NULL && c->fd < 0; ai = ai->ai_next) {
		c->fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
		if (c->fd < 0)
			continue;
		setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
		if (connect(c->fd, ai->ai_addr, ai->ai_addrlen) < 0) {
			close(c->fd);
			c->fd = -1;
		}
	}
	freeaddrinfo(res);
	if (c->fd < 0) {
		fprintf(stderr, "roost import: cannot connect to %s port %s: %s\n", host, port,
		        strerror(errno));
		return ROOST_EIO;
	}
	return 0;
}

/* An IMAP quoted string for s (no CR, LF or NUL). */
static int
quote(struct buf *b, const char *s)
{
	buf_append_byte(b, '"');
	for (; *s != '\0'; s++) {
		if (*s == '\r' || *s == '\n')
			return ROOST_EINVAL;
		if (*s == '"' || *s == '\\')
			buf_append_byte(b, '\\');
		buf_append_byte(b, (uint8_t)*s);
	}
	return buf_append_byte(b, '"');
}

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
	struct lex l = {(const char *)c->resp.data, (const char *)c->resp.data + c->resp.len};
	struct buf sb = BUF_INIT(IMAP_MAX_LINE), name = BUF_INIT(IMAP_MAX_LINE);
	const char *s;
	size_t n;
	char sep = '\0';
	bool noselect = false;
	enum tok t;

	if (lex_next(&l, &s, &n, &sb) != T_ATOM || lex_next(&l, &s, &n, &sb) != T_ATOM ||
	    !is_word(s, n, "LIST") || lex_next(&l, &s, &n, &sb) != T_LPAREN)
		goto out;
	while ((t = lex_next(&l, &s, &n, &sb)) == T_ATOM) {
		if (is_word(s, n, "\\Noselect") || is_word(s, n, "\\NonExistent"))
			noselect = true;
	}
	if (t != T_RPAREN)
		goto out;
	t = lex_next(&l, &s, &n, &sb);
	if (t == T_STRING && n == 1)
		sep = s[0];
	else if (t != T_NIL)
		goto out;
	t = lex_next(&l, &s, &n, &sb);
	if ((t != T_STRING && t != T_ATOM) || noselect || n == 0)
		goto out;
	if (fl->n == fl->cap) {
		fl->cap = fl->cap == 0 ? 16 : fl->cap * 2;
		fl->v = xreallocarray(fl->v, fl->cap, sizeof(*fl->v));
	}
	fl->v[fl->n].server_name = xstrndup(s, n);
	/* ours: the separator becomes '/', modified UTF-7 decoded */
	{
		struct buf raw = BUF_INIT(IMAP_MAX_LINE);

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
	struct lex l = {(const char *)c->resp.data, (const char *)c->resp.data + c->resp.len};
	struct buf sb = BUF_INIT(IMAP_MAX_LINE);
	struct remote_msg m = {0};
	const char *s;
	size_t n;
	enum tok t;

	if (lex_next(&l, &s, &n, &sb) != T_ATOM || lex_next(&l, &s, &n, &sb) != T_ATOM ||
	    lex_next(&l, &s, &n, &sb) != T_ATOM || !is_word(s, n, "FETCH") ||
	    lex_next(&l, &s, &n, &sb) != T_LPAREN)
		goto out;
	while ((t = lex_next(&l, &s, &n, &sb)) == T_ATOM) {
		if (is_word(s, n, "UID") && lex_next(&l, &s, &n, &sb) == T_ATOM) {
			m.uid = (uint32_t)strtoul(s, NULL, 10);
		} else if (is_word(s, n, "RFC822.SIZE") && lex_next(&l, &s, &n, &sb) == T_ATOM) {
			m.size = strtoull(s, NULL, 10);
		} else if (is_word(s, n, "INTERNALDATE")) {
			if (lex_next(&l, &s, &n, &sb) == T_STRING)
				(void)parse_internaldate(s, n, &m.date);
		} else if (is_word(s, n, "FLAGS")) {
			if (lex_next(&l, &s, &n, &sb) != T_LPAREN)
				goto out;
			while ((t = lex_next(&l, &s, &n, &sb)) == T_ATOM) {
				if (is_word(s, n, "\\Seen"))
					m.flags |= MSG_SEEN;
				else if (is_word(s, n, "\\Answered"))
					m.flags |= MSG_ANSWERED;
				else if (is_word(s, n, "\\Flagged"))
					m.flags |= MSG_FLAGGED;
				else if (is_word(s, n, "\\Deleted"))
					m.flags |= MSG_DELETED;
				else if (is_word(s, n, "\\Draft"))
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
			if (t != T_RPAREN)
				goto out;
		} else if (n >= 6 && strncasecmp(s, "BODY[", 5) == 0) {
			t = lex_next(&l, &s, &n, &sb);
			if (t == T_STRING && rl->one != NULL) {
				/* literal: borrowed from c->resp until the next read */
				rl->one->body = s;
				rl->one->body_len = n;
			}
		} else {
			/* an item we did not ask for: skip its value */
			int depth = 0;

			do {
				t = lex_next(&l, &s, &n, &sb);
				if (t == T_LPAREN)
					depth++;
				else if (t == T_RPAREN)
					depth--;
			} while (depth > 0 && t != T_END && t != T_BAD);
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
	if ((rc = quote(&cmd, f->server_name)) != 0 ||
	    (rc = send_cmd(c, tag, sizeof(tag), "EXAMINE %s", buf_cstr(&cmd))) != 0 ||
	    (rc = wait_tag(c, tag, on_examine, &uidvalidity)) != 0)
		goto out;
	if ((rc = send_cmd(c, tag, sizeof(tag),
	                   "UID FETCH 1:* (UID FLAGS INTERNALDATE RFC822.SIZE)")) != 0 ||
	    (rc = wait_tag(c, tag, on_fetch, &rl)) != 0)
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
		if ((rc = send_cmd(c, tag, sizeof(tag), "UID FETCH %u (UID BODY.PEEK[])",
		                   m->uid)) != 0 ||
		    (rc = wait_tag(c, tag, on_fetch_body, &rl)) != 0)
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
	struct imapc c = {.fd = -1, .resp = BUF_INIT(IMAP_MAX_RESPONSE + IMAP_MAX_LINE)};
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
	if ((rc = connect_to(&c, host, port)) != 0)
		goto out;
	if (tls && (rc = tls_start(&c)) != 0)
		goto out;
	if ((rc = read_response(&c)) != 0 || c.resp.len < 4 ||
	    strncasecmp((char *)c.resp.data, "* OK", 4) != 0) {
		fprintf(stderr, "roost import: %s: no IMAP greeting\n", host);
		rc = ROOST_EPROTO;
		goto out;
	}
	if ((rc = send_cmd(&c, tag, sizeof(tag), "CAPABILITY")) != 0 ||
	    (rc = wait_tag(&c, tag, on_capability, NULL)) != 0)
		goto out;
	if (!tls && c.starttls) {
		if ((rc = send_cmd(&c, tag, sizeof(tag), "STARTTLS")) != 0 ||
		    (rc = wait_tag(&c, tag, NULL, NULL)) != 0 || (rc = tls_start(&c)) != 0)
			goto out;
		if ((rc = send_cmd(&c, tag, sizeof(tag), "CAPABILITY")) != 0 ||
		    (rc = wait_tag(&c, tag, on_capability, NULL)) != 0)
			goto out;
	}
	if ((rc = quote(&cmd, login)) != 0 || (rc = buf_append_byte(&cmd, ' ')) != 0 ||
	    (rc = quote(&cmd, pass)) != 0) {
		fprintf(stderr, "roost import: the login or password holds a line break\n");
		goto out;
	}
	if ((rc = send_cmd(&c, tag, sizeof(tag), "LOGIN %s", buf_cstr(&cmd))) != 0 ||
	    (rc = wait_tag(&c, tag, NULL, NULL)) != 0) {
		fprintf(stderr, "roost import: %s: login as %s refused\n", host, login);
		goto out;
	}
	if ((rc = send_cmd(&c, tag, sizeof(tag), "LIST \"\" \"*\"")) != 0 ||
	    (rc = wait_tag(&c, tag, on_list, &fl)) != 0)
		goto out;
	for (size_t i = 0; i < fl.n; i++) {
		int e = copy_folder(&c, ic, &fl.v[i], prefix);

		if (e == ROOST_EIO || e == ROOST_ECLOSED || e == ROOST_EPROTO ||
		    e == ROOST_ETOOBIG) {
			rc = e;
			break;
		}
	}
	if (rc == 0 && send_cmd(&c, tag, sizeof(tag), "LOGOUT") == 0)
		(void)wait_tag(&c, tag, NULL, NULL);
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
	if (c.ssl != NULL) {
		SSL_shutdown(c.ssl);
		SSL_free(c.ssl);
	}
	SSL_CTX_free(c.ctx);
	if (c.fd >= 0)
		close(c.fd);
	buf_free(&c.resp);
	free(login);
	free(host);
	return rc;
}
