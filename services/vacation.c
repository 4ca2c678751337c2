/*
 * The vacation auto-reply (include/roost/vacation.h).
 *
 * The setting is one metadata entry of the user's server part, JSON
 * ({"isEnabled", "fromDate", "toDate", "subject", "textBody",
 * "htmlBody"}), bounded by the metadata value bound. Whom it replied to
 * is a second entry: records of (64-bit digest of the lower-cased sender
 * address, time of the reply), at most VACATION_MAX_SENDERS of them, the
 * oldest dropped first; it is rewritten before the reply is sent, so a
 * crash between the two loses a reply rather than sending two.
 *
 * No reply (RFC 3834 2 and 3.1, RFC 5230 4 and 5) when: the setting is
 * off or now is outside [fromDate, toDate); the envelope sender is null,
 * or a mailer daemon, list owner or list request address; the message is
 * Auto-Submitted (anything but "no"), carries a List-* field, or says
 * Precedence: bulk, list or junk; the sender is the user; none of To,
 * Cc, Bcc, Resent-To, Resent-Cc, Resent-Bcc names the user (mail that
 * came through a list or an alias); the sender had a reply in the last
 * VACATION_PERIOD_DAYS days.
 *
 * The reply goes to the envelope sender with the null envelope sender,
 * From the address the user was written to, "Auto-Submitted:
 * auto-replied", In-Reply-To and References; through the outbound queue,
 * or straight into the mailbox of a local sender (as DSNs go).
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "roost/buf.h"
#include "roost/config.h"
#include "roost/delivery.h"
#include "roost/dkim.h"
#include "roost/error.h"
#include "roost/hash.h"
#include "roost/log.h"
#include "roost/message.h"
#include "roost/queue.h"
#include "roost/services.h"
#include "roost/storage.h"
#include "roost/vacation.h"
#include "roost/xalloc.h"

#define ENTRY_SETTING STORAGE_METADATA_INTERNAL "vacation"
#define ENTRY_SENT STORAGE_METADATA_INTERNAL "vacation-sent"
#define HEADER_MAX (64u << 10) /* of the message read for the rules */
#define ADDRESSES_MAX 200      /* To/Cc/... addresses looked at */
#define SUBJECT_MAX 200        /* bytes of the original subject quoted */
#define REFS_MAX 900           /* bytes of References kept */
#define DEFAULT_TEXT "I am away at the moment and will read your message when I am back.\r\n"

struct sent_rec {
	uint64_t digest;
	int64_t time;
};

/* Whom replies went to: read, decided and rewritten under this lock, so
 * two deliveries at once to one user reply once. Held across a metadata
 * read and write, never across the sending. */
static pthread_mutex_t sent_mu = PTHREAD_MUTEX_INITIALIZER;

void
vacation_free(struct vacation *v)
{
	if (v == NULL)
		return;
	free(v->subject);
	free(v->text_body);
	free(v->html_body);
	memset(v, 0, sizeof(*v));
}

static char *
json_str_dup(json_t *o, const char *key)
{
	const char *s = json_string_value(json_object_get(o, key));

	return s != NULL ? xstrdup(s) : NULL;
}

int
vacation_get(struct storage *st, const char *user, struct vacation *v)
{
	struct metadata_entry *e = NULL;
	size_t n = 0;
	json_t *o;
	int rc;

	memset(v, 0, sizeof(*v));
	rc = storage_metadata_get(st, user, "", ENTRY_SETTING, 0, &e, &n);
	if (rc == ROOST_ENOTFOUND)
		return 0; /* a user without a store yet */
	if (rc != 0)
		return rc;
	if (n == 0) {
		storage_metadata_free(e, n);
		return 0;
	}
	o = json_loadb((const char *)e[0].value, e[0].len, 0, NULL);
	storage_metadata_free(e, n);
	if (o == NULL)
		return 0; /* unreadable: as if never set */
	v->enabled = json_is_true(json_object_get(o, "isEnabled"));
	if (json_is_integer(json_object_get(o, "fromDate"))) {
		v->has_from = true;
		v->from_date = json_integer_value(json_object_get(o, "fromDate"));
	}
	if (json_is_integer(json_object_get(o, "toDate"))) {
		v->has_to = true;
		v->to_date = json_integer_value(json_object_get(o, "toDate"));
	}
	v->subject = json_str_dup(o, "subject");
	v->text_body = json_str_dup(o, "textBody");
	v->html_body = json_str_dup(o, "htmlBody");
	json_decref(o);
	return 0;
}

static json_t *
str_or_null(const char *s)
{
	return s != NULL ? json_string(s) : json_null();
}

int
vacation_set(struct storage *st, const char *user, const struct vacation *v)
{
	const char *names[2] = {ENTRY_SETTING, ENTRY_SENT};
	const uint8_t *vals[2];
	size_t lens[2] = {0, 0};
	json_t *o, *subject, *text, *html;
	char *dump;
	int rc;

	/* json_string() refuses what is not UTF-8 (and so a NUL). */
	subject = str_or_null(v->subject);
	text = str_or_null(v->text_body);
	html = str_or_null(v->html_body);
	if (subject == NULL || text == NULL || html == NULL) {
		json_decref(subject);
		json_decref(text);
		json_decref(html);
		return ROOST_EINVAL;
	}
	o = json_pack("{sbsososo}", "isEnabled", v->enabled, "subject", subject, "textBody", text,
	              "htmlBody", html);
	json_object_set_new(o, "fromDate", v->has_from ? json_integer(v->from_date) : json_null());
	json_object_set_new(o, "toDate", v->has_to ? json_integer(v->to_date) : json_null());
	dump = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	if (strlen(dump) > STORAGE_METADATA_MAX_VALUE) {
		free(dump);
		return ROOST_ETOOBIG;
	}
	vals[0] = (const uint8_t *)dump;
	lens[0] = strlen(dump);
	vals[1] = NULL; /* forget whom the earlier text went to */
	(void)storage_user_init(st, user);
	pthread_mutex_lock(&sent_mu);
	rc = storage_metadata_set(st, user, "", names, vals, lens, 2);
	pthread_mutex_unlock(&sent_mu);
	/* After the write, failed or not: a delivery that read before it
	 * cannot keep its older "off" (the generation moved). */
	vacation_cache_forget(user);
	free(dump);
	return rc;
}

/* ---- the rules ---- */

/* The header block of the message (at most HEADER_MAX bytes) into out. */
static int
read_header(const struct msg_input *in, struct buf *out)
{
	size_t want = in->len < HEADER_MAX ? in->len : HEADER_MAX;
	const uint8_t *p;
	size_t end = 0;

	if (in->fd >= 0) {
		ssize_t r;

		buf_reserve(out, want);
		do
			r = pread(in->fd, out->data, want, 0);
		while (r < 0 && errno == EINTR);
		if (r < 0)
			return ROOST_EIO;
		out->len = (size_t)r;
	} else {
		buf_append(out, in->data, want);
	}
	p = out->data;
	for (size_t i = 0; i + 1 < out->len; i++) {
		if (p[i] == '\n' && (p[i + 1] == '\n' ||
		                     (p[i + 1] == '\r' && i + 2 < out->len && p[i + 2] == '\n'))) {
			end = i + 1;
			break;
		}
	}
	if (end == 0)
		return ROOST_EINVAL; /* no end of header within the bound */
	buf_truncate(out, end);
	buf_append_str(out, "\r\n");
	return 0;
}

/* The address's local part is one no person answers (RFC 3834 3.1.1). */
static bool
machine_sender(const char *sender)
{
	static const char *const names[] = {"mailer-daemon", "postmaster", "listserv",
	                                    "majordomo",     "noreply",    "no-reply",
	                                    "do-not-reply",  "donotreply"};
	const char *at = strrchr(sender, '@');
	size_t n = at != NULL ? (size_t)(at - sender) : strlen(sender);

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (strlen(names[i]) == n && strncasecmp(sender, names[i], n) == 0)
			return true;
	}
	return (n > 6 && strncasecmp(sender, "owner-", 6) == 0) ||
	       (n > 8 && strncasecmp(sender + n - 8, "-request", 8) == 0) ||
	       (n > 6 && strncasecmp(sender + n - 6, "-owner", 6) == 0) ||
	       (n > 8 && strncasecmp(sender + n - 8, "-bounces", 8) == 0) ||
	       (n > 8 && strncasecmp(sender + n - 8, "-bounce", 7) == 0 && sender[n - 1] == '+');
}

static bool
header_is(const struct message *msg, const char *name, struct buf *tmp)
{
	buf_reset(tmp);
	return message_header_get(msg, NULL, name, false, tmp) == 0;
}

/* Why no reply goes to this message, or NULL. */
static const char *
automatic_message(const struct message *msg)
{
	static const char *const lists[] = {"List-Id",          "List-Post",   "List-Help",
	                                    "List-Unsubscribe", "List-Owner",  "List-Archive",
	                                    "List-Subscribe",   "Mailing-List"};
	struct buf v = BUF_INIT(0);
	const char *why = NULL;

	if (header_is(msg, "Auto-Submitted", &v)) {
		const char *s = buf_cstr(&v);

		while (*s == ' ' || *s == '\t')
			s++;
		if (strncasecmp(s, "no", 2) != 0 ||
		    (s[2] != '\0' && s[2] != ' ' && s[2] != ';' && s[2] != '\t' && s[2] != '('))
			why = "auto_submitted";
	}
	for (size_t i = 0; why == NULL && i < sizeof(lists) / sizeof(lists[0]); i++) {
		if (header_is(msg, lists[i], &v))
			why = "mailing_list";
	}
	if (why == NULL && header_is(msg, "Precedence", &v)) {
		const char *s = buf_cstr(&v);

		while (*s == ' ' || *s == '\t')
			s++;
		if (strncasecmp(s, "bulk", 4) == 0 || strncasecmp(s, "list", 4) == 0 ||
		    strncasecmp(s, "junk", 4) == 0)
			why = "bulk";
	}
	if (why == NULL && header_is(msg, "X-Auto-Response-Suppress", &v) &&
	    (strcasestr(buf_cstr(&v), "all") != NULL || strcasestr(buf_cstr(&v), "oof") != NULL))
		why = "auto_submitted";
	buf_free(&v);
	return why;
}

struct addr_walk {
	const struct roost_services *sv;
	const char *user;
	unsigned seen;
	char found[DELIVERY_MAX_USER]; /* the first address of the user met */
};

static void
addr_one(const struct message_address *a, void *arg)
{
	struct addr_walk *w = arg;
	struct delivery_rcpt d;
	char addr[DELIVERY_MAX_USER];
	int n;

	if (w->found[0] != '\0' || a->kind != MESSAGE_ADDR_MAILBOX || a->mailbox == NULL ||
	    a->host == NULL || w->seen++ >= ADDRESSES_MAX)
		return;
	n = snprintf(addr, sizeof(addr), "%s@%s", a->mailbox, a->host);
	if (n <= 0 || (size_t)n >= sizeof(addr))
		return;
	for (const char *p = addr; *p != '\0'; p++) {
		if ((unsigned char)*p <= ' ' || *p == 0x7f || *p == '<' || *p == '>' || *p == '"')
			return; /* nothing we could write into a From field */
	}
	if (delivery_resolve(w->sv, addr, &d) == 0 && strcmp(d.user, w->user) == 0)
		snprintf(w->found, sizeof(w->found), "%s", addr);
}

/* The first address of To, Cc, Bcc and Resent-* that is the user's into
 * w->found ("" when none). */
static void
find_user_address(const struct message *msg, struct addr_walk *w)
{
	static const char *const fields[] = {"To",        "Cc",        "Bcc",
	                                     "Resent-To", "Resent-Cc", "Resent-Bcc"};
	struct buf v = BUF_INIT(0);

	for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]) && w->found[0] == '\0'; i++) {
		const char *s, *nl;

		buf_reset(&v);
		if (message_header_get_all(msg, NULL, fields[i], false, &v) != 0)
			continue;
		for (s = buf_cstr(&v); w->found[0] == '\0' && *s != '\0'; s = nl + (*nl != '\0')) {
			nl = strchr(s, '\n');
			if (nl == NULL)
				nl = s + strlen(s);
			message_address_walk((const uint8_t *)s, (size_t)(nl - s), addr_one, w);
		}
	}
	buf_free(&v);
}

/* ---- the record of replies ---- */

static uint64_t
sender_digest(const char *sender)
{
	char low[DELIVERY_MAX_USER];
	size_t i;

	for (i = 0; sender[i] != '\0' && i + 1 < sizeof(low); i++)
		low[i] = (char)(sender[i] >= 'A' && sender[i] <= 'Z' ? sender[i] + 32 : sender[i]);
	low[i] = '\0';
	return hash_str64(low);
}

/* May sender have a reply now? When so, it is recorded as having had it.
 * 0 (the answer in *ok_r) or a storage error. */
static int
record_reply(struct storage *st, const char *user, const char *sender, int64_t now, bool *ok_r)
{
	const char *name = ENTRY_SENT;
	struct metadata_entry *e = NULL;
	struct sent_rec *recs = NULL;
	size_t n = 0, n_recs = 0, oldest = 0;
	uint64_t d = sender_digest(sender);
	const uint8_t *val;
	size_t len;
	int rc;

	*ok_r = false;
	pthread_mutex_lock(&sent_mu);
	rc = storage_metadata_get(st, user, "", ENTRY_SENT, 0, &e, &n);
	if (rc != 0)
		goto out;
	if (n == 1 && e[0].len % sizeof(struct sent_rec) == 0) {
		n_recs = e[0].len / sizeof(struct sent_rec);
		if (n_recs > VACATION_MAX_SENDERS)
			n_recs = VACATION_MAX_SENDERS;
	}
	recs = xcalloc(n_recs + 1, sizeof(*recs));
	if (n_recs > 0)
		memcpy(recs, e[0].value, n_recs * sizeof(*recs));
	for (size_t i = 0; i < n_recs; i++) {
		if (recs[i].digest == d) {
			if (recs[i].time <= now &&
			    now - recs[i].time < (int64_t)VACATION_PERIOD_DAYS * 86400)
				goto out;         /* replied lately */
			recs[i] = recs[--n_recs]; /* replaced below */
			break;
		}
	}
	if (n_recs == VACATION_MAX_SENDERS) {
		for (size_t i = 1; i < n_recs; i++) {
			if (recs[i].time < recs[oldest].time)
				oldest = i;
		}
		recs[oldest] = recs[--n_recs];
	}
	recs[n_recs++] = (struct sent_rec){.digest = d, .time = now};
	val = (const uint8_t *)recs;
	len = n_recs * sizeof(*recs);
	rc = storage_metadata_set(st, user, "", &name, &val, &len, 1);
	*ok_r = rc == 0;
out:
	pthread_mutex_unlock(&sent_mu);
	storage_metadata_free(e, n);
	free(recs);
	return rc;
}

/* ---- the reply ---- */

/* text as a header field's value: as is when it is plain printable ASCII,
 * else RFC 2047 encoded words (UTF-8, base64), never splitting a
 * character; controls are dropped either way. */
static void
header_text(struct buf *out, const char *text)
{
	const unsigned char *s = (const unsigned char *)text;
	size_t n = strlen(text), i = 0;
	bool plain = n <= 900; /* longer: encoded words, folded */

	for (size_t k = 0; k < n; k++) {
		if (s[k] >= 0x7f || (s[k] < ' ' && s[k] != '\t') ||
		    (s[k] == '=' && s[k + 1] == '?'))
			plain = false;
	}
	if (plain) {
		buf_append(out, s, n);
		return;
	}
	while (i < n) {
		unsigned char in[48];
		char enc[72];
		size_t m = 0;

		while (i < n && m < 45) {
			size_t clen = 1;

			while (i + clen < n && (s[i + clen] & 0xc0) == 0x80 && clen < 4)
				clen++;
			if (m + clen > 45 && m > 0)
				break;
			for (size_t k = 0; k < clen; k++) {
				if (s[i + k] >= ' ' || s[i + k] >= 0x80)
					in[m++] = s[i + k];
			}
			i += clen;
		}
		if (m == 0)
			continue;
		EVP_EncodeBlock((unsigned char *)enc, in, (int)m);
		buf_printf(out, "%s=?UTF-8?B?%s?=",
		           out->len > 0 && out->data[out->len - 1] == '=' ? "\r\n " : "", enc);
	}
}

/* The message ids ("<...>") of a field value, printable and bounded. */
static void
msg_ids(const char *v, size_t max, struct buf *out)
{
	while ((v = strchr(v, '<')) != NULL) {
		const char *end = strchr(v, '>');
		bool ok = end != NULL && end - v > 2 && (size_t)(end - v) < 250;

		if (end == NULL)
			return;
		for (const char *p = v + 1; ok && p < end; p++)
			ok = *p > ' ' && *p < 0x7f && *p != '<';
		if (ok && out->len + (size_t)(end - v + 2) <= max)
			buf_printf(out, "%s%.*s", out->len > 0 ? " " : "", (int)(end - v + 1), v);
		v = end + 1;
	}
}

/* body as base64 lines of 76. */
static void
base64_body(struct buf *out, const char *body)
{
	const unsigned char *p = (const unsigned char *)body;
	size_t n = strlen(body);

	for (size_t off = 0; off < n; off += 57) {
		char enc[80];
		size_t m = n - off < 57 ? n - off : 57;

		EVP_EncodeBlock((unsigned char *)enc, p + off, (int)m);
		buf_printf(out, "%s\r\n", enc);
	}
}

/* A plain text version of html: tags dropped, a few entities undone. */
static char *
html_to_text(const char *html)
{
	static const struct {
		const char *ent, *ch;
	} ents[] = {{"&amp;", "&"},   {"&lt;", "<"},  {"&gt;", ">"},
	            {"&quot;", "\""}, {"&#39;", "'"}, {"&nbsp;", " "}};
	struct buf out = BUF_INIT(0);
	bool in_tag = false;

	for (const char *p = html; *p != '\0'; p++) {
		if (in_tag) {
			in_tag = *p != '>';
			continue;
		}
		if (*p == '<') {
			if (strncasecmp(p, "<br", 3) == 0 || strncasecmp(p, "<p", 2) == 0 ||
			    strncasecmp(p, "</p", 3) == 0 || strncasecmp(p, "<div", 4) == 0)
				buf_append_str(&out, "\r\n");
			in_tag = true;
			continue;
		}
		if (*p == '&') {
			size_t k;

			for (k = 0; k < sizeof(ents) / sizeof(ents[0]); k++) {
				if (strncasecmp(p, ents[k].ent, strlen(ents[k].ent)) == 0)
					break;
			}
			if (k < sizeof(ents) / sizeof(ents[0])) {
				buf_append_str(&out, ents[k].ch);
				p += strlen(ents[k].ent) - 1;
				continue;
			}
		}
		buf_append_byte(&out, (uint8_t)*p);
	}
	buf_append_str(&out, "\r\n");
	return (char *)buf_steal(&out, NULL);
}

static void
build_reply(const struct roost_config *cfg, const struct vacation *v, const struct message *msg,
            const char *from, const char *to, struct buf *out)
{
	char date[64], id[40];
	uint8_t rnd[12];
	struct buf orig = BUF_INIT(0), refs = BUF_INIT(0), mid = BUF_INIT(0);
	time_t now = time(NULL);
	struct tm tm;
	char *gen = NULL;
	const char *text = v->text_body;

	gmtime_r(&now, &tm);
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S +0000", &tm);
	if (RAND_bytes(rnd, sizeof(rnd)) != 1)
		memset(rnd, 0, sizeof(rnd));
	for (size_t i = 0; i < sizeof(rnd); i++)
		snprintf(id + 2 * i, 3, "%02x", rnd[i]);
	buf_printf(out, "Date: %s\r\nFrom: <%s>\r\nTo: <%s>\r\nSubject: ", date, from, to);
	if (v->subject != NULL && v->subject[0] != '\0') {
		header_text(out, v->subject);
	} else {
		struct buf s = BUF_INIT(0);

		(void)message_header_get(msg, NULL, "Subject", true, &orig);
		buf_append_str(&s, "Auto: ");
		if (orig.len > 0) {
			size_t n = orig.len < SUBJECT_MAX ? orig.len : SUBJECT_MAX;

			while (n > 0 && n < orig.len && (orig.data[n] & 0xc0) == 0x80)
				n--; /* not inside a character */
			buf_append(&s, orig.data, n);
		} else {
			buf_append_str(&s, "away");
		}
		header_text(out, buf_cstr(&s));
		buf_free(&s);
	}
	buf_printf(out, "\r\nMessage-ID: <vacation.%s@%s>\r\n", id,
	           cfg->hostname != NULL ? cfg->hostname : "localhost");
	buf_reset(&orig);
	if (message_header_get(msg, NULL, "Message-ID", false, &orig) == 0)
		msg_ids(buf_cstr(&orig), 250, &mid);
	if (mid.len > 0) {
		buf_reset(&orig);
		if (message_header_get(msg, NULL, "References", false, &orig) == 0)
			msg_ids(buf_cstr(&orig), REFS_MAX - mid.len - 1, &refs);
		buf_printf(out, "In-Reply-To: %s\r\nReferences: %s%s%s\r\n", buf_cstr(&mid),
		           buf_cstr(&refs), refs.len > 0 ? " " : "", buf_cstr(&mid));
	}
	buf_append_str(out, "Auto-Submitted: auto-replied\r\nX-Auto-Response-Suppress: All\r\n"
	                    "MIME-Version: 1.0\r\n");
	if (text == NULL && v->html_body != NULL)
		text = gen = html_to_text(v->html_body);
	if (text == NULL)
		text = DEFAULT_TEXT;
	if (v->html_body == NULL) {
		buf_append_str(out, "Content-Type: text/plain; charset=utf-8\r\n"
		                    "Content-Transfer-Encoding: base64\r\n\r\n");
		base64_body(out, text);
	} else {
		buf_printf(out,
		           "Content-Type: multipart/alternative; boundary=\"=_%s\"\r\n\r\n"
		           "--=_%s\r\nContent-Type: text/plain; charset=utf-8\r\n"
		           "Content-Transfer-Encoding: base64\r\n\r\n",
		           id, id);
		base64_body(out, text);
		buf_printf(out,
		           "--=_%s\r\nContent-Type: text/html; charset=utf-8\r\n"
		           "Content-Transfer-Encoding: base64\r\n\r\n",
		           id);
		base64_body(out, v->html_body);
		buf_printf(out, "--=_%s--\r\n", id);
	}
	free(gen);
	buf_free(&orig);
	buf_free(&refs);
	buf_free(&mid);
}

/* Send the reply to (an address the path parser let through). */
static int
send_reply(const struct roost_services *sv, const char *from, const char *to, const struct buf *msg,
           const char **via_r)
{
	struct delivery_rcpt dr;
	int rc;

	memset(&dr, 0, sizeof(dr));
	rc = delivery_resolve(sv, to, &dr);
	if (rc == 0) {
		/* A local sender: into the INBOX, no queue (its null sender
		 * keeps the other side's vacation from answering). */
		struct delivery_trace t = {0};
		struct buf full = BUF_INIT(0);
		char id[DELIVERY_ID_LEN];
		struct delivery_target dt = {.user = dr.user, .mailbox = "INBOX"};
		struct msg_input in = {.fd = -1};

		*via_r = "local";
		delivery_new_id(id);
		t.sender = "";
		t.protocol = "local";
		t.id = id;
		t.for_rcpt = to;
		delivery_trace_headers(sv->cfg, &t, &full);
		buf_append(&full, msg->data, msg->len);
		in.data = full.data;
		in.len = full.len;
		rc = delivery_store(sv, "", &in, &dt, 1, true);
		buf_free(&full);
		return rc;
	}
	if (rc != ROOST_EPERM || sv->queue == NULL)
		return rc != 0 ? rc : ROOST_ENOTFOUND;
	{
		struct queue_rcpt_in rin = {.addr = to, .notify = "NEVER", .orcpt = ""};
		struct queue_submission sub = {0};
		struct buf pre = BUF_INIT(0);
		const char *dom = strrchr(from, '@');
		char qid[QUEUE_ID_LEN];

		*via_r = "queue";
		if (dom != NULL)
			(void)dkim_sign(sv->cfg, dom + 1, msg->data, msg->len, &pre);
		sub.sender = "";
		sub.rcpts = &rin;
		sub.n_rcpts = 1;
		sub.prefix = pre.data;
		sub.prefix_len = pre.len;
		sub.data = msg->data;
		sub.len = msg->len;
		sub.fd = -1;
		rc = queue_submit(sv->queue, &sub, qid);
		if (rc == 0)
			queue_commit(sv->queue, qid, true);
		buf_free(&pre);
		return rc;
	}
}

static void
log_skip(const char *user, const char *sender, const char *why)
{
	log_info("event=vacation user=%s to=%s status=skipped reason=%s", LOG_QUOTE(user),
	         LOG_QUOTE(sender), why);
}

void
vacation_on_delivery(const struct roost_services *sv, const char *sender,
                     const struct msg_input *in, const char *user)
{
	struct vacation v;
	struct buf hdr = BUF_INIT(0), reply = BUF_INIT(0);
	struct message *msg = NULL;
	struct addr_walk w = {.sv = sv, .user = user};
	struct delivery_rcpt self;
	int64_t now = (int64_t)time(NULL);
	const char *why = NULL, *via = "-";
	bool ok = false;
	uint64_t gen;
	int rc;

	/* The null sender never gets one, and most users have it off: both
	 * skipped quietly, the second without a storage read once known. */
	if (sender == NULL || sender[0] == '\0' || vacation_cache_off(user, &gen) ||
	    vacation_get(sv->storage, user, &v) != 0)
		return;
	if (!v.enabled) {
		vacation_cache_note_off(user, gen);
		goto out;
	}
	if ((v.has_from && now < v.from_date) || (v.has_to && now >= v.to_date)) {
		why = "outside_dates";
	} else if (machine_sender(sender)) {
		why = "machine_sender";
	} else if (delivery_resolve(sv, sender, &self) == 0 && strcmp(self.user, user) == 0) {
		why = "own_address";
	} else if (read_header(in, &hdr) != 0 ||
	           message_parse(hdr.data, hdr.len, NULL, &msg) != 0) {
		why = "unreadable";
	} else if ((why = automatic_message(msg)) != NULL) {
		/* why says */
	} else {
		find_user_address(msg, &w);
		if (w.found[0] == '\0')
			why = "not_addressed";
	}
	if (why == NULL) {
		rc = record_reply(sv->storage, user, sender, now, &ok);
		if (rc != 0)
			why = "storage_error";
		else if (!ok)
			why = "already_replied";
	}
	if (why != NULL) {
		log_skip(user, sender, why);
		goto out;
	}
	build_reply(sv->cfg, &v, msg, w.found, sender, &reply);
	rc = send_reply(sv, w.found, sender, &reply, &via);
	log_info("event=vacation user=%s from=%s to=%s status=%s via=%s", LOG_QUOTE(user),
	         LOG_QUOTE(w.found), LOG_QUOTE(sender), rc == 0 ? "sent" : roost_strerror(rc), via);
out:
	message_free(&msg);
	buf_free(&hdr);
	buf_free(&reply);
	vacation_free(&v);
}
