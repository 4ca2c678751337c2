/*
 * The parse cache record of a message (see message_cache.h): its format,
 * one place for the delivery path that makes it and FETCH that reads it.
 */
#include <stdio.h>
#include <string.h>

#include "roost/error.h"
#include "roost/message_cache.h"

bool
message_cache_decode(struct message_cache *pc)
{
	unsigned long long v = 0, e, b, s, p = 0, n = 0;
	int off = 0;
	const char *t = buf_cstr(&pc->raw);
	bool r5 = strncmp(t, "R5 ", 3) == 0;
	bool r4 = r5 || strncmp(t, "R4 ", 3) == 0;

	pc->have_vsize = pc->have_parts = pc->have_preview = false;
	pc->bin_len = 0;
	if (!r4 && strncmp(t, "R3 ", 3) != 0 && strncmp(t, "R2 ", 3) != 0)
		return false;
	if (r5 ? sscanf(t + 3, "%llu %llu %llu %llu %llu %llu\n%n", &v, &e, &b, &s, &p, &n, &off) !=
	             6
	    : r4 ? sscanf(t + 3, "%llu %llu %llu %llu %llu\n%n", &v, &e, &b, &s, &p, &off) != 5
	         : sscanf(t + 3, "%llu %llu %llu %llu\n%n", &v, &e, &b, &s, &off) != 4)
		return false;
	if (off <= 0)
		return false;
	off += 3;
	if (e > pc->raw.len || b > pc->raw.len || s > pc->raw.len || p > pc->raw.len ||
	    n > pc->raw.len || e + b + s + p + n + (size_t)off != pc->raw.len)
		return false;
	pc->env = t + off;
	pc->env_len = e;
	pc->body = pc->env + e;
	pc->body_len = b;
	pc->bs = pc->body + b;
	pc->bs_len = s;
	pc->have_vsize = true;
	pc->vsize = v;
	pc->pv = pc->bs + s;
	pc->pv_len = p;
	pc->bin = pc->pv + p;
	pc->bin_len = n;
	pc->have_parts = e > 0 && (t[1] == '3' || r4);
	pc->have_preview = pc->have_parts && r4;
	return true;
}

void
message_cache_encode(struct buf *out, uint64_t vsize, const char *env, size_t env_len,
                     const char *body, size_t body_len, const char *bs, size_t bs_len,
                     const char *pv, size_t pv_len, const char *bin, size_t bin_len)
{
	buf_printf(out, "R5 %llu %zu %zu %zu %zu %zu\n", (unsigned long long)vsize, env_len,
	           body_len, bs_len, pv_len, bin_len);
	buf_append(out, env, env_len);
	buf_append(out, body, body_len);
	buf_append(out, bs, bs_len);
	buf_append(out, pv, pv_len);
	buf_append(out, bin, bin_len);
}

int
message_cache_make(const struct message *msg, uint64_t vsize, struct buf *out)
{
	struct buf e = BUF_INIT(0), b = BUF_INIT(0), s = BUF_INIT(0), p = BUF_INIT(0);
	int rc = ROOST_EINVAL;

	if (message_envelope(msg, NULL, &e) == 0 &&
	    message_bodystructure(msg, message_root(msg), false, &b) == 0 &&
	    message_bodystructure(msg, message_root(msg), true, &s) == 0 && e.len > 0) {
		message_preview(msg, &p);
		message_cache_encode(out, vsize, (const char *)e.data, e.len, (const char *)b.data,
		                     b.len, (const char *)s.data, s.len, (const char *)p.data,
		                     p.len, "", 0);
		rc = 0;
	}
	buf_free(&p);
	buf_free(&e);
	buf_free(&b);
	buf_free(&s);
	return rc;
}
