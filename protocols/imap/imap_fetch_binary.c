/*
 * FETCH BINARY[part]<partial> and BINARY.SIZE[part] (RFC 3516): the part
 * found, its decoded size from the cache record or measured, and the
 * decoded literal planned (decoded as it is sent, by imap_fetch.c).
 */
#include <stdio.h>
#include <string.h>

#include "roost/cte.h"
#include "roost/error.h"
#include "roost/message.h"
#include "roost/message_cache.h"

#include "imap_fetch.h"

#define BINSIZE_MAX MESSAGE_CACHE_BINSIZE_MAX

/* The offset in raw of the octet at conv_off of its CRLF form. */
static size_t
raw_offset(const uint8_t *raw, size_t raw_len, size_t conv_off)
{
	size_t pos = 0;
	bool half = false;

	fetch_crlf_walk(raw, raw_len, &pos, &half, NULL, conv_off);
	return pos;
}

/* "<part> <octets> <nul>\n" of one section in bin[0..len): true with the
 * numbers, false when absent. */
static bool
binsize_find(const char *bin, size_t len, const char *key, uint64_t *size_r, bool *nul_r)
{
	size_t kl = strlen(key);

	for (const char *p = bin, *end = bin + len; p < end;) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		unsigned long long v;
		int nul;

		if (nl == NULL)
			break;
		if ((size_t)(nl - p) > kl && memcmp(p, key, kl) == 0 && p[kl] == ' ' &&
		    sscanf(p + kl, " %llu %d", &v, &nul) == 2) {
			*size_r = v;
			*nul_r = nul != 0;
			return true;
		}
		p = nl + 1;
	}
	return false;
}

/* The decoded size of a BINARY section: from the cache record, else
 * measured (one decoding pass that keeps nothing) and added to it. */
static void
binary_measure(struct binsizes *bz, const struct fetch_item *it, enum cte_kind cte,
               const uint8_t *in, size_t len, uint64_t *size_r, bool *nul_r)
{
	char key[32 * 11 + 2];
	size_t k = 0;

	key[k++] = '0';
	if (it->depth > 0) {
		k = 0;
		for (size_t i = 0; i < it->depth; i++)
			k += (size_t)snprintf(key + k, sizeof(key) - k, "%s%u", i ? "." : "",
			                      it->path[i]);
	}
	key[k] = '\0';
	if ((bz->pc->bin_len > 0 &&
	     binsize_find(bz->pc->bin, bz->pc->bin_len, key, size_r, nul_r)) ||
	    binsize_find((const char *)bz->added.data, bz->added.len, key, size_r, nul_r))
		return;
	cte_measure(cte, in, len, size_r, nul_r);
	if (bz->pc->bin_len + bz->added.len + k + 24 <= BINSIZE_MAX)
		buf_printf(&bz->added, "%s %llu %d\n", key, (unsigned long long)*size_r,
		           *nul_r ? 1 : 0);
}

/* The part a BINARY item names (NULL when there is none) and its
 * encoding; ROOST_ENOTSUP when that cannot be undone. */
static int
binary_part(const struct message *msg, const struct fetch_item *it,
            const struct message_part **part_r, enum cte_kind *cte_r)
{
	const struct message_part *part = message_root(msg);
	struct message_part_info info;

	*part_r = NULL;
	*cte_r = CTE_BINARY;
	if (it->depth > 0 && message_find_part(msg, it->path, it->depth, &part) < 0)
		return 0;
	message_part_info(msg, part, &info);
	*cte_r = cte_kind_from_name(info.cte);
	message_part_info_free(&info);
	bool composite = part->is_multipart || part->is_message_rfc822;
	if (*cte_r == CTE_UNKNOWN || (composite && (*cte_r == CTE_BASE64 || *cte_r == CTE_QP)))
		return ROOST_ENOTSUP;
	*part_r = part;
	return 0;
}

/* Can every BINARY item of req be answered for msg? */
bool
fetch_binary_decodable(const struct fetch_req *req, const struct message *msg)
{
	for (size_t i = 0; i < req->n; i++) {
		const struct message_part *part;
		enum cte_kind cte;

		if ((req->items[i].kind == F_BINARY || req->items[i].kind == F_BINARY_SIZE) &&
		    binary_part(msg, &req->items[i], &part, &cte) < 0)
			return false;
	}
	return true;
}

/*
 * BINARY[part]<partial> or BINARY.SIZE[part] (RFC 3516) into the plan: the
 * part's content with its transfer encoding undone, as a literal8 when it
 * holds NUL. The decoding itself happens as the literal is sent, a chunk
 * at a time (fetch_send). data/len: the message as parsed (CRLF form),
 * raw/raw_len: as stored. ROOST_ENOTSUP when the encoding cannot be undone
 * (nothing planned: the caller answers [UNKNOWN-CTE]).
 *
 * A multipart or message/rfc822 part may only be 7bit, 8bit or binary
 * (RFC 2045 6.4): its content is its body as it is, the parts inside keep
 * their own encodings. The whole message (BINARY[]) is the message as it
 * is, unless its one body is encoded: then its header, with
 * Content-Transfer-Encoding made "binary", and the body decoded.
 */
int
fetch_plan_binary(struct fetch_state *st, size_t *mark, struct binsizes *bz,
                  const struct fetch_item *it, const uint8_t *data, size_t len,
                  const struct message *msg, const uint8_t *raw, size_t raw_len)
{
	const struct message_part *part;
	struct buf prefix = BUF_INIT(0);
	size_t b_off = 0, b_len = 0;
	enum cte_kind cte;

	if (binary_part(msg, it, &part, &cte) < 0)
		return ROOST_ENOTSUP;
	if (part != NULL) {
		if (it->depth > 0) {
			b_off = part->body_off;
			b_len = part->body_len;
		} else if (cte == CTE_BASE64 || cte == CTE_QP) {
			static const char *const names[] = {"Content-Transfer-Encoding"};

			message_header_fields(data + part->header_off, part->header_len, names, 1,
			                      true, &prefix);
			/* the new field goes before the blank line */
			if (prefix.len >= 2 && prefix.data[prefix.len - 1] == '\n' &&
			    (prefix.len == 2 || prefix.data[prefix.len - 3] == '\n'))
				buf_truncate(&prefix, prefix.len - 2);
			buf_append_str(&prefix, "Content-Transfer-Encoding: binary\r\n\r\n");
			b_off = part->body_off;
			b_len = part->body_len;
		} else {
			b_len = len;
		}
	}
	/* the stored bytes are decoded, not their CRLF form: binary content
	 * comes back exactly */
	size_t rs = b_off, re = b_off + b_len;
	if (st->crlf) {
		rs = raw_offset(raw, raw_len, b_off);
		re = raw_offset(raw, raw_len, b_off + b_len);
	}
	uint64_t dsize = 0;
	bool nul = false;
	if (re > rs)
		binary_measure(bz, it, cte, raw + rs, re - rs, &dsize, &nul);
	nul = nul || (prefix.len > 0 && memchr(prefix.data, '\0', prefix.len) != NULL);
	uint64_t total = prefix.len + dsize;
	if (it->kind == F_BINARY_SIZE) {
		buf_printf(&st->text, "%s %llu", it->resp, (unsigned long long)total);
		buf_free(&prefix);
		return 0;
	}
	uint64_t o = it->partial ? it->p_off : 0, n = total;
	if (it->partial)
		n = o >= total ? 0 : (it->p_len < total - o ? it->p_len : total - o);
	buf_printf(&st->text, "%s %s{%llu}\r\n", it->resp, nul ? "~" : "", (unsigned long long)n);
	uint64_t skip = 0;
	if (o < prefix.len) {
		uint64_t take = prefix.len - o < n ? prefix.len - o : n;

		buf_append(&st->text, prefix.data + o, (size_t)take);
		n -= take;
	} else {
		skip = o - prefix.len;
	}
	if (n > 0) {
		fetch_seg_text(st, mark);
		fetch_seg_add_decoded(st, rs, re - rs, cte, skip, n);
	}
	buf_free(&prefix);
	return 0;
}
