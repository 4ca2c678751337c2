/*
 * The thread a message belongs to, as its own header tells it (THREADID,
 * RFC 8474 5.2): the root of its References chain. Read from the header
 * block alone, so a caller needs no MIME parse.
 */
#include <string.h>
#include <strings.h>

#include "roost/error.h"
#include "roost/hash.h"
#include "roost/message.h"

/* Bytes of one message id taken (RFC 5322 lines are at most 998). */
#define ROOT_MAX_ID 998

/* The first "<id>" of v[0..len) into out (brackets dropped): true when
 * one was found. */
static bool
first_id(const uint8_t *v, size_t len, struct buf *out)
{
	for (size_t i = 0; i < len;) {
		const uint8_t *lt = memchr(v + i, '<', len - i);
		size_t a, b;

		if (lt == NULL)
			return false;
		a = b = (size_t)(lt - v) + 1;
		while (b < len && v[b] != '>' && v[b] != '<' && v[b] != ' ' && v[b] != '\t' &&
		       v[b] != '\r' && v[b] != '\n' && v[b] != '\0')
			b++;
		if (b < len && v[b] == '>' && b > a && b - a <= ROOT_MAX_ID) {
			buf_append(out, v + a, b - a);
			return true;
		}
		i = b > a ? b : a;
	}
	return false;
}

/* The first id of the first field named name (folded lines included) in
 * the header block hdr[0..len) into out. */
static bool
field_id(const uint8_t *hdr, size_t len, const char *name, struct buf *out)
{
	size_t nl = strlen(name);

	for (size_t i = 0; i < len;) {
		const uint8_t *eol = memchr(hdr + i, '\n', len - i);
		size_t end = eol != NULL ? (size_t)(eol - hdr) + 1 : len, vend;

		if (end - i > nl && hdr[i + nl] == ':' &&
		    strncasecmp((const char *)hdr + i, name, nl) == 0) {
			/* the value runs on over continuation lines */
			for (vend = end; vend < len && (hdr[vend] == ' ' || hdr[vend] == '\t');) {
				const uint8_t *e = memchr(hdr + vend, '\n', len - vend);

				vend = e != NULL ? (size_t)(e - hdr) + 1 : len;
			}
			return first_id(hdr + i + nl + 1, vend - i - nl - 1, out);
		}
		i = end;
	}
	return false;
}

int
message_thread_root(const uint8_t *data, size_t len, struct buf *out)
{
	size_t hlen = len;

	/* the header block ends at the first empty line */
	for (size_t i = 0; i < len; i++) {
		if (data[i] != '\n')
			continue;
		if (i + 1 < len && data[i + 1] == '\n') {
			hlen = i + 1;
			break;
		}
		if (i + 2 < len && data[i + 1] == '\r' && data[i + 2] == '\n') {
			hlen = i + 1;
			break;
		}
	}
	if (field_id(data, hlen, "References", out) || field_id(data, hlen, "In-Reply-To", out) ||
	    field_id(data, hlen, "Message-ID", out))
		return 0;
	return ROOST_ENOTFOUND;
}

uint64_t
message_thread_id(const uint8_t *data, size_t len, uint64_t emailid)
{
	struct buf root = BUF_INIT(0);
	uint64_t v;

	/* One thread per root of the References chain: a reply names its
	 * root first (RFC 5322 3.6.4), so the thread's messages agree on it
	 * whatever else they list; a message naming none starts a thread
	 * of its own, keyed by its EMAILID. */
	if (data == NULL || message_thread_root(data, len, &root) < 0) {
		buf_free(&root);
		return emailid != 0 ? emailid : 1;
	}
	v = hash_fnv1a64(root.data, root.len, HASH_FNV1A64_INIT);
	buf_free(&root);
	return v != 0 ? v : 1;
}
