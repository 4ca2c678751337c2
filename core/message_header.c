/*
 * Header blocks: iterating fields (RFC 5322 2.2 with the obsolete syntax of
 * 4.5: WSP before the colon, empty continuation lines), unfolding, lookup,
 * HEADER.FIELDS(.NOT).
 */
#include <string.h>
#include <strings.h>

#include "roost/error.h"
#include "roost/message.h"

#include "message_impl.h"

void
message_hdr_iter_init(struct hdr_iter *it, const uint8_t *hdr, size_t len)
{
	it->p = hdr;
	it->end = hdr + len;
}

/* The end of the line at p (after its LF, or end). */
static const uint8_t *
line_end(const uint8_t *p, const uint8_t *end)
{
	const uint8_t *q = memchr(p, '\n', (size_t)(end - p));

	return q == NULL ? end : q + 1;
}

static size_t
strip_eol(const uint8_t *s, const uint8_t *e)
{
	size_t l = (size_t)(e - s);

	if (l > 0 && s[l - 1] == '\n') {
		l--;
		if (l > 0 && s[l - 1] == '\r')
			l--;
	}
	return l;
}

bool
message_hdr_iter_next(struct hdr_iter *it, struct hdr_field *f)
{
	const uint8_t *s = it->p, *e, *colon;
	size_t l, i;

	if (s >= it->end)
		return false;
	e = line_end(s, it->end);
	l = strip_eol(s, e);
	if (l == 0 && e > s && e[-1] == '\n')
		return false; /* the blank line */
	/* continuation lines */
	while (e < it->end && (*e == ' ' || *e == '\t'))
		e = line_end(e, it->end);
	it->p = e;

	memset(f, 0, sizeof(*f));
	f->full = s;
	f->full_len = (size_t)(e - s);
	l = strip_eol(s, e);
	colon = memchr(s, ':', l);
	if (colon == NULL) {
		f->name = s;
		f->name_len = l;
		f->value = s + l;
		return true;
	}
	f->has_colon = true;
	f->name = s;
	f->name_len = (size_t)(colon - s);
	while (f->name_len > 0 && (s[f->name_len - 1] == ' ' || s[f->name_len - 1] == '\t'))
		f->name_len--;
	i = (size_t)(colon - s) + 1;
	/* only the first line's white space: a value that starts on a
	 * continuation line keeps the fold's white space, as in Dovecot */
	while (i < l && (s[i] == ' ' || s[i] == '\t'))
		i++;
	f->value = s + i;
	f->value_len = l - i;
	return true;
}

bool
message_hdr_name_eq(const struct hdr_field *f, const char *name)
{
	size_t i;

	if (!f->has_colon)
		return false;
	/* strcasecmp bounded by the field name, without a strlen per call */
	for (i = 0; i < f->name_len; i++) {
		uint8_t a = f->name[i], b = (uint8_t)name[i];

		if (b == '\0')
			return false;
		if (a >= 'A' && a <= 'Z')
			a += 32;
		if (b >= 'A' && b <= 'Z')
			b += 32;
		if (a != b)
			return false;
	}
	return name[i] == '\0';
}

int
message_hdr_unfold(const uint8_t *v, size_t len, struct buf *out)
{
	size_t i, run = 0;
	int ret;

	for (i = 0; i < len; i++) {
		if (v[i] == '\r' || v[i] == '\n') {
			if (run > 0 && (ret = buf_append(out, v + i - run, run)) < 0)
				return ret;
			run = 0;
			continue;
		}
		run++;
	}
	if (run > 0)
		return buf_append(out, v + len - run, run);
	if (out->data == NULL)
		return buf_reserve(out, 1);
	return 0;
}

bool
message_hdr_find(const uint8_t *hdr, size_t len, const char *name, struct hdr_field *f)
{
	struct hdr_iter it;

	message_hdr_iter_init(&it, hdr, len);
	while (message_hdr_iter_next(&it, f))
		if (message_hdr_name_eq(f, name))
			return true;
	return false;
}

static bool
name_listed(const struct hdr_field *f, const char *const *names, size_t n)
{
	size_t i;

	if (!f->has_colon)
		return false;
	for (i = 0; i < n; i++)
		if (message_hdr_name_eq(f, names[i]))
			return true;
	return false;
}

int
message_header_fields(const uint8_t *hdr, size_t len, const char *const *names, size_t n, bool not,
                      struct buf *out)
{
	struct hdr_iter it;
	struct hdr_field f;
	size_t start = out->len;
	int ret;

	message_hdr_iter_init(&it, hdr, len);
	while (message_hdr_iter_next(&it, &f)) {
		if (name_listed(&f, names, n) == not )
			continue;
		ret = buf_append(out, f.full, f.full_len);
		/* a last field without a line end still gets one */
		if (ret == 0 && (f.full_len == 0 || f.full[f.full_len - 1] != '\n'))
			ret = buf_append(out, "\r\n", 2);
		if (ret < 0) {
			buf_truncate(out, start);
			return ret;
		}
	}
	if ((ret = buf_append(out, "\r\n", 2)) < 0) {
		buf_truncate(out, start);
		return ret;
	}
	return 0;
}

static void
part_header(const struct message *msg, const struct message_part *part, const uint8_t **h_r,
            size_t *len_r)
{
	if (part == NULL)
		part = message_root(msg);
	*h_r = msg->data + part->header_off;
	*len_r = part->header_len;
}

static int
append_value(const struct hdr_field *f, bool decode, struct buf *out)
{
	struct buf tmp = BUF_INIT(0);
	int ret;

	size_t a = 0, b;

	ret = message_hdr_unfold(f->value, f->value_len, &tmp);
	/* trimmed: what a reader (or SEARCH) means by the value */
	b = tmp.len;
	while (a < b && (tmp.data[a] == ' ' || tmp.data[a] == '\t'))
		a++;
	while (b > a && (tmp.data[b - 1] == ' ' || tmp.data[b - 1] == '\t'))
		b--;
	if (ret == 0 && !decode)
		ret = b > a ? buf_append(out, tmp.data + a, b - a) : buf_reserve(out, 1);
	else if (ret == 0)
		ret = message_decode_words((const char *)tmp.data + a, b - a, out);
	buf_free(&tmp);
	return ret;
}

int
message_header_get(const struct message *msg, const struct message_part *part, const char *name,
                   bool decode, struct buf *out)
{
	const uint8_t *h;
	size_t len;
	struct hdr_field f;

	part_header(msg, part, &h, &len);
	if (!message_hdr_find(h, len, name, &f))
		return ROOST_ENOTFOUND;
	return append_value(&f, decode, out);
}

int
message_header_get_all(const struct message *msg, const struct message_part *part, const char *name,
                       bool decode, struct buf *out)
{
	const uint8_t *h;
	size_t len;
	struct hdr_iter it;
	struct hdr_field f;
	bool found = false;
	int ret;

	part_header(msg, part, &h, &len);
	message_hdr_iter_init(&it, h, len);
	while (message_hdr_iter_next(&it, &f)) {
		if (!message_hdr_name_eq(&f, name))
			continue;
		if (found && (ret = buf_append_byte(out, '\n')) < 0)
			return ret;
		if ((ret = append_value(&f, decode, out)) < 0)
			return ret;
		found = true;
	}
	return found ? 0 : ROOST_ENOTFOUND;
}

int
message_header_addresses(const struct message *msg, const struct message_part *part,
                         const char *name, struct buf *out)
{
	const uint8_t *h;
	size_t len;
	struct hdr_iter it;
	struct hdr_field f;
	bool found = false;

	part_header(msg, part, &h, &len);
	message_hdr_iter_init(&it, h, len);
	while (message_hdr_iter_next(&it, &f)) {
		if (!message_hdr_name_eq(&f, name))
			continue;
		if (found)
			buf_append_byte(out, '\n');
		message_address_list_text(f.value, f.value_len, out);
		found = true;
	}
	/* reserve: an empty field still makes a (NUL-terminated) value */
	return found ? buf_reserve(out, 1) : ROOST_ENOTFOUND;
}
