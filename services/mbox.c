/* The mbox format: reader, unquoting and writer (see roost/mbox.h). */
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "roost/date.h"
#include "roost/error.h"
#include "roost/mbox.h"
#include "roost/storage.h"

static const char *const wdays[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
static const char *const months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                     "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

/* A token of line[*i..len): skips spaces first; false at the end. */
static bool
token(const uint8_t *line, size_t len, size_t *i, const uint8_t **tok_r, size_t *tlen_r)
{
	while (*i < len && (line[*i] == ' ' || line[*i] == '\t'))
		(*i)++;
	if (*i >= len)
		return false;
	*tok_r = line + *i;
	while (*i < len && line[*i] != ' ' && line[*i] != '\t')
		(*i)++;
	*tlen_r = (size_t)(line + *i - *tok_r);
	return true;
}

static int
name_index(const uint8_t *t, size_t n, const char *const *names, int count)
{
	if (n != 3)
		return -1;
	for (int k = 0; k < count; k++) {
		if (strncasecmp((const char *)t, names[k], 3) == 0)
			return k;
	}
	return -1;
}

/* Digits t[0..n) as a number, -1 unless 1..max_digits digits. */
static long
digits(const uint8_t *t, size_t n, size_t max_digits)
{
	long v = 0;

	if (n == 0 || n > max_digits)
		return -1;
	for (size_t k = 0; k < n; k++) {
		if (t[k] < '0' || t[k] > '9')
			return -1;
		v = v * 10 + (t[k] - '0');
	}
	return v;
}

/* "+hhmm"/"-hhmm" as seconds east of UTC. */
static bool
zone(const uint8_t *t, size_t n, long *off_r)
{
	long v;

	if (n != 5 || (t[0] != '+' && t[0] != '-') || (v = digits(t + 1, 4, 4)) < 0 ||
	    v % 100 >= 60 || v / 100 > 23)
		return false;
	*off_r = (t[0] == '-' ? -1 : 1) * ((v / 100) * 3600 + (v % 100) * 60);
	return true;
}

/* "Www Mmm dd hh:mm[:ss] [zone] yyyy [zone]" from line[i..len). */
static bool
asctime_at(const uint8_t *line, size_t len, size_t i, int64_t *date_r)
{
	const uint8_t *t;
	size_t n;
	long mon, day, hh, mm, ss = 0, year = -1, off = 0;

	if (!token(line, len, &i, &t, &n) || name_index(t, n, wdays, 7) < 0)
		return false;
	if (!token(line, len, &i, &t, &n) || (mon = name_index(t, n, months, 12)) < 0)
		return false;
	if (!token(line, len, &i, &t, &n) || (day = digits(t, n, 2)) < 1 || day > 31)
		return false;
	if (!token(line, len, &i, &t, &n) || n < 5 || t[2] != ':' || (hh = digits(t, 2, 2)) < 0 ||
	    hh > 23 || (mm = digits(t + 3, 2, 2)) < 0 || mm > 59)
		return false;
	if (n == 8) {
		if (t[5] != ':' || (ss = digits(t + 6, 2, 2)) < 0 || ss > 60)
			return false;
	} else if (n != 5) {
		return false;
	}
	/* The year, with a zone name or offset before or after it. */
	for (int k = 0; k < 3 && token(line, len, &i, &t, &n); k++) {
		long v = digits(t, n, 4);

		if (n == 4 && v >= 1000) {
			year = v;
			if (token(line, len, &i, &t, &n))
				(void)zone(t, n, &off);
			break;
		}
		if (!zone(t, n, &off) && (n > 5 || digits(t, n, 4) >= 0))
			return false;
	}
	if (year < 0)
		return false;
	*date_r = date_days_from_civil(year, (unsigned)mon + 1, (unsigned)day) * 86400 + hh * 3600 +
	          mm * 60 + ss - off;
	return true;
}

bool
mbox_from_line_date(const uint8_t *line, size_t len, int64_t *date_r)
{
	size_t i = 5;

	if (len < 5 || memcmp(line, "From ", 5) != 0)
		return false;
	/* The sender may be empty or, quoted, hold spaces: the date is the
	 * first place an asctime parses. */
	while (i < len) {
		while (i < len && line[i] == ' ')
			i++;
		if (asctime_at(line, len, i, date_r))
			return true;
		while (i < len && line[i] != ' ')
			i++;
	}
	return false;
}

/* The line at data[pos..): its length without the line end. */
static size_t
line_len(const uint8_t *data, size_t len, size_t pos)
{
	const uint8_t *nl = memchr(data + pos, '\n', len - pos);
	size_t n = nl == NULL ? len - pos : (size_t)(nl - (data + pos));

	if (n > 0 && data[pos + n - 1] == '\r')
		n--;
	return n;
}

static bool
is_from_line(const uint8_t *data, size_t len, size_t pos, int64_t *date_r)
{
	int64_t date;

	if (len - pos < 5 || memcmp(data + pos, "From ", 5) != 0)
		return false;
	return mbox_from_line_date(data + pos, line_len(data, len, pos),
	                           date_r != NULL ? date_r : &date);
}

int
mbox_reader_init(struct mbox_reader *r, const uint8_t *data, size_t len)
{
	size_t pos = 0;

	while (pos < len && (data[pos] == '\n' || data[pos] == '\r'))
		pos++;
	r->data = data;
	r->len = len;
	r->pos = pos;
	if (pos < len && !is_from_line(data, len, pos, NULL))
		return ROOST_EINVAL;
	return 0;
}

int
mbox_next(struct mbox_reader *r, struct mbox_entry *e_r)
{
	const uint8_t *d = r->data;
	size_t pos = r->pos, flen, start, end;
	const uint8_t *nl;

	if (pos >= r->len)
		return 0;
	memset(e_r, 0, sizeof(*e_r));
	flen = line_len(d, r->len, pos);
	if (!mbox_from_line_date(d + pos, flen, &e_r->date))
		return 0; /* mbox_reader_init and the scan below only stop at From_ lines */
	e_r->offset = pos;
	e_r->from_line = d + pos;
	e_r->from_len = flen;
	nl = memchr(d + pos, '\n', r->len - pos);
	start = nl == NULL ? r->len : (size_t)(nl - d) + 1;
	/* The next From_ line starts right after a line end. */
	end = start;
	for (;;) {
		nl = memchr(d + end, '\n', r->len - end);
		if (nl == NULL) {
			end = r->len;
			break;
		}
		end = (size_t)(nl - d) + 1;
		if (end < r->len && d[end] == 'F' && is_from_line(d, r->len, end, NULL))
			break;
	}
	r->pos = end;
	e_r->raw = d + start;
	e_r->raw_len = end - start;
	/* The blank line before a From_ line (or at the end) separates. */
	if (e_r->raw_len >= 2 && memcmp(e_r->raw + e_r->raw_len - 2, "\n\n", 2) == 0)
		e_r->raw_len -= 1;
	else if (e_r->raw_len >= 3 && memcmp(e_r->raw + e_r->raw_len - 3, "\n\r\n", 3) == 0)
		e_r->raw_len -= 2;
	else if (e_r->raw_len == 1 && e_r->raw[0] == '\n')
		e_r->raw_len = 0;
	return 1;
}

/* Does line (without line end) start with ">" * min_gt... "From "? Returns
 * the number of '>' or -1. */
static long
quoted_from(const uint8_t *p, size_t n)
{
	size_t k = 0;

	while (k < n && p[k] == '>')
		k++;
	if (n - k >= 5 && memcmp(p + k, "From ", 5) == 0)
		return (long)k;
	return -1;
}

enum mbox_format
mbox_detect(const uint8_t *data, size_t len)
{
	size_t pos = 0;

	while (pos < len) {
		const uint8_t *nl = memchr(data + pos, '\n', len - pos);
		size_t n = nl == NULL ? len - pos : (size_t)(nl - (data + pos));

		if (quoted_from(data + pos, n) >= 2)
			return MBOX_FORMAT_MBOXRD;
		pos += n + 1;
	}
	return MBOX_FORMAT_MBOXO;
}

void
mbox_meta_free(struct mbox_meta *meta)
{
	for (size_t i = 0; i < meta->n_keywords; i++)
		free(meta->keywords[i]);
	meta->n_keywords = 0;
}

enum state_header { SH_NONE, SH_STATUS, SH_XSTATUS, SH_XKEYWORDS, SH_XUID, SH_XIMAPBASE, SH_XIMAP };

static enum state_header
state_header(const uint8_t *p, size_t n)
{
	static const struct {
		const char *name;
		enum state_header h;
	} names[] = {
	    {"status", SH_STATUS}, {"x-status", SH_XSTATUS},     {"x-keywords", SH_XKEYWORDS},
	    {"x-uid", SH_XUID},    {"x-imapbase", SH_XIMAPBASE}, {"x-imap", SH_XIMAP},
	};

	for (size_t k = 0; k < sizeof(names) / sizeof(names[0]); k++) {
		size_t l = strlen(names[k].name);

		if (n > l && strncasecmp((const char *)p, names[k].name, l) == 0) {
			size_t i = l;

			while (i < n && (p[i] == ' ' || p[i] == '\t'))
				i++;
			if (i < n && p[i] == ':')
				return names[k].h;
		}
	}
	return SH_NONE;
}

static uint32_t
first_number(const uint8_t *p, size_t n, size_t *i)
{
	uint64_t v = 0;
	bool any = false;

	while (*i < n && (p[*i] == ' ' || p[*i] == '\t'))
		(*i)++;
	while (*i < n && p[*i] >= '0' && p[*i] <= '9') {
		v = v * 10 + (uint64_t)(p[*i] - '0');
		if (v > UINT32_MAX)
			return 0;
		any = true;
		(*i)++;
	}
	return any ? (uint32_t)v : 0;
}

static void
add_keyword(struct mbox_meta *meta, const uint8_t *p, size_t n)
{
	char kw[STORAGE_MAX_KEYWORD_LEN + 1];

	if (n == 0 || n > STORAGE_MAX_KEYWORD_LEN || meta->n_keywords >= MBOX_MAX_KEYWORDS)
		return;
	memcpy(kw, p, n);
	kw[n] = '\0';
	if (!storage_keyword_valid(kw))
		return;
	for (size_t i = 0; i < meta->n_keywords; i++) {
		if (strcasecmp(meta->keywords[i], kw) == 0)
			return;
	}
	meta->keywords[meta->n_keywords] = malloc(n + 1);
	if (meta->keywords[meta->n_keywords] == NULL)
		abort();
	memcpy(meta->keywords[meta->n_keywords++], kw, n + 1);
}

/* Take the value v[0..n) of a state header (a whole logical line, its
 * continuation lines included) into meta. */
static void
take_state(enum state_header h, const uint8_t *v, size_t n, struct mbox_meta *meta)
{
	size_t i = 0;

	switch (h) {
	case SH_STATUS:
		for (i = 0; i < n; i++) {
			if (v[i] == 'R')
				meta->flags |= MSG_SEEN;
		}
		break;
	case SH_XSTATUS:
		for (i = 0; i < n; i++) {
			if (v[i] == 'A')
				meta->flags |= MSG_ANSWERED;
			else if (v[i] == 'F')
				meta->flags |= MSG_FLAGGED;
			else if (v[i] == 'T')
				meta->flags |= MSG_DRAFT;
			else if (v[i] == 'D')
				meta->flags |= MSG_DELETED;
		}
		break;
	case SH_XKEYWORDS:
		while (i < n) {
			size_t s;

			while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ',' ||
			                 v[i] == '\r' || v[i] == '\n'))
				i++;
			s = i;
			while (i < n && v[i] != ' ' && v[i] != '\t' && v[i] != ',' &&
			       v[i] != '\r' && v[i] != '\n')
				i++;
			add_keyword(meta, v + s, i - s);
		}
		break;
	case SH_XUID:
		meta->uid = first_number(v, n, &i);
		break;
	case SH_XIMAPBASE:
		meta->uidvalidity = first_number(v, n, &i);
		break;
	case SH_XIMAP:
		meta->pseudo = true;
		meta->uidvalidity = first_number(v, n, &i);
		break;
	case SH_NONE:
		break;
	}
}

/* Append line p[0..n) (without its line end) and a CRLF. */
static int
put_line(struct buf *out, const uint8_t *p, size_t n, bool line_end)
{
	int err = buf_append(out, p, n);

	if (err == 0 && line_end)
		err = buf_append(out, "\r\n", 2);
	return err;
}

int
mbox_decode(const uint8_t *raw, size_t len, enum mbox_format format, struct buf *out,
            struct mbox_meta *meta_r)
{
	size_t pos = 0;
	bool in_header = true;
	enum state_header dropping = SH_NONE;
	size_t drop_start = 0;
	int err = 0;

	memset(meta_r, 0, sizeof(*meta_r));
	if (format != MBOX_FORMAT_MBOXRD && format != MBOX_FORMAT_MBOXO)
		return ROOST_EINVAL;
	while (pos < len && err == 0) {
		const uint8_t *p = raw + pos;
		const uint8_t *nl = memchr(p, '\n', len - pos);
		size_t n = nl == NULL ? len - pos : (size_t)(nl - p);
		bool line_end = nl != NULL;
		size_t body = n; /* without a CR before the LF */
		long q;

		if (line_end && body > 0 && p[body - 1] == '\r')
			body--;
		if (in_header) {
			bool cont = body > 0 && (p[0] == ' ' || p[0] == '\t');

			if (dropping != SH_NONE && !cont) {
				take_state(dropping, raw + drop_start, pos - drop_start, meta_r);
				dropping = SH_NONE;
			}
			if (body == 0) {
				in_header = false;
			} else if (dropping != SH_NONE) {
				pos += n + (line_end ? 1 : 0);
				continue;
			} else if (!cont && (dropping = state_header(p, body)) != SH_NONE) {
				const uint8_t *colon = memchr(p, ':', body);

				drop_start = (size_t)(colon + 1 - raw);
				pos += n + (line_end ? 1 : 0);
				continue;
			}
		}
		q = quoted_from(p, body);
		if (q >= 1 && (format == MBOX_FORMAT_MBOXRD || q == 1))
			err = put_line(out, p + 1, body - 1, line_end);
		else
			err = put_line(out, p, body, line_end);
		pos += n + (line_end ? 1 : 0);
	}
	if (dropping != SH_NONE)
		take_state(dropping, raw + drop_start, len - drop_start, meta_r);
	return err;
}

/* Copy s into the From_ line without spaces or controls. */
static int
put_sender(struct buf *out, const char *s)
{
	int err = 0;

	if (s == NULL || s[0] == '\0')
		return buf_append_str(out, "MAILER-DAEMON");
	for (size_t i = 0; s[i] != '\0' && i < 512 && err == 0; i++) {
		unsigned char c = (unsigned char)s[i];

		err = buf_append_byte(out, c <= ' ' || c == 0x7f ? '_' : c);
	}
	return err;
}

static int
put_state(struct buf *out, uint32_t flags, const char *const *keywords, size_t n_keywords)
{
	int err = 0;

	if ((flags & MSG_SEEN) != 0)
		err = buf_append_str(out, "Status: RO\n");
	else
		err = buf_append_str(out, "Status: O\n");
	if (err == 0 && (flags & (MSG_ANSWERED | MSG_FLAGGED | MSG_DRAFT | MSG_DELETED)) != 0) {
		err = buf_printf(out, "X-Status: %s%s%s%s\n", (flags & MSG_ANSWERED) ? "A" : "",
		                 (flags & MSG_FLAGGED) ? "F" : "", (flags & MSG_DRAFT) ? "T" : "",
		                 (flags & MSG_DELETED) ? "D" : "");
	}
	if (err == 0 && n_keywords > 0) {
		err = buf_append_str(out, "X-Keywords:");
		for (size_t i = 0; i < n_keywords && err == 0; i++)
			err = buf_printf(out, " %s", keywords[i]);
		if (err == 0)
			err = buf_append_byte(out, '\n');
	}
	return err;
}

int
mbox_encode(struct buf *out, const uint8_t *msg, size_t len, const char *sender, int64_t date,
            uint32_t flags, const char *const *keywords, size_t n_keywords)
{
	size_t orig = out->len, pos = 0;
	bool in_header = true;
	time_t t = (time_t)date;
	struct tm tm;
	int err;

	if (gmtime_r(&t, &tm) == NULL)
		return ROOST_EINVAL;
	err = buf_append_str(out, "From ");
	if (err == 0)
		err = put_sender(out, sender);
	if (err == 0)
		err = buf_printf(out, " %s %s %2d %02d:%02d:%02d %d\n", wdays[tm.tm_wday],
		                 months[tm.tm_mon], tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
		                 tm.tm_year + 1900);
	while (err == 0 && pos < len) {
		const uint8_t *p = msg + pos;
		const uint8_t *nl = memchr(p, '\n', len - pos);
		size_t n = nl == NULL ? len - pos : (size_t)(nl - p);
		size_t body = n;

		if (nl != NULL && body > 0 && p[body - 1] == '\r')
			body--;
		if (in_header && body == 0) {
			err = put_state(out, flags, keywords, n_keywords);
			in_header = false;
			if (err != 0)
				break;
		}
		if (quoted_from(p, body) >= 0)
			err = buf_append_byte(out, '>');
		if (err == 0)
			err = buf_append(out, p, body);
		/* A CR alone at the very end stays (no LF follows it). */
		if (err == 0 && nl == NULL && body < n)
			err = buf_append(out, p + body, n - body);
		if (err == 0)
			err = buf_append_byte(out, '\n');
		pos += n + (nl != NULL ? 1 : 0);
	}
	/* A message with no body separator (headers only, or empty). */
	if (err == 0 && in_header)
		err = put_state(out, flags, keywords, n_keywords);
	if (err == 0)
		err = buf_append_byte(out, '\n');
	if (err != 0)
		buf_truncate(out, orig);
	return err;
}
