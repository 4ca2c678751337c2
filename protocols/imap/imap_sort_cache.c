/*
 * The sort key cache that SORT and THREAD share (imap_sort.h says where the
 * keys live and what invalidates them): lined up with the view by UID,
 * filled from the headers of the messages a command needs (collation keys,
 * sent date, interned message ids), the header reads charged to the
 * command's search budget, and a collation rank per field for qsort.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "roost/collate.h"
#include "roost/config.h"
#include "roost/conn.h"
#include "roost/error.h"
#include "roost/hash.h"
#include "roost/message.h"
#include "roost/services.h"
#include "roost/storage.h"
#include "roost/xalloc.h"

#include "imap_sort.h"

static void
sort_msg_clear(struct sort_msg *m)
{
	free(m->blob);
	free(m->refs);
	memset(m, 0, sizeof(*m));
}

static void
ranks_drop(struct sort_cache *sc)
{
	for (int f = 0; f < SF_N; f++) {
		free(sc->rank[f]);
		sc->rank[f] = NULL;
	}
}

struct field_ctx {
	const struct sort_cache *sc;
	enum sort_field f;
};

static int
field_cmp(const void *pa, const void *pb, void *arg)
{
	const struct field_ctx *x = arg;
	size_t la, lb;
	const char *a = sort_str(&x->sc->m[*(const uint32_t *)pa], x->f, &la);
	const char *b = sort_str(&x->sc->m[*(const uint32_t *)pb], x->f, &lb);

	return collate_cmp(a, la, b, lb);
}

const uint32_t *
sort_cache_rank(struct sort_cache *sc, enum sort_field f)
{
	if (sc->rank[f] != NULL)
		return sc->rank[f];
	uint32_t *ord = xmalloc((sc->n ? sc->n : 1) * sizeof(*ord));
	uint32_t *rank = xcalloc(sc->n ? sc->n : 1, sizeof(*rank));
	struct field_ctx x = {sc, f};
	size_t k = 0;

	for (size_t i = 0; i < sc->n; i++)
		if (sc->m[i].loaded)
			ord[k++] = (uint32_t)i;
	qsort_r(ord, k, sizeof(*ord), field_cmp, &x);
	uint32_t r = 0;
	for (size_t j = 0; j < k; j++) {
		if (j > 0 && field_cmp(&ord[j - 1], &ord[j], &x) != 0)
			r++;
		rank[ord[j]] = r;
	}
	free(ord);
	sc->rank[f] = rank;
	return rank;
}

struct sort_cache *
sort_cache_sync(struct imap_view *v)
{
	struct sort_cache *sc = v->sort_cache;

	if (sc == NULL) {
		sc = xcalloc(1, sizeof(*sc));
		arena_init(&sc->id_arena);
		sc->id_seed =
		    0x9e3779b97f4a7c15ULL ^ (uint64_t)(uintptr_t)sc ^ (uint64_t)time(NULL);
		v->sort_cache = sc;
	}
	if (sc->n == v->n) {
		size_t i = 0;
		while (i < v->n && sc->m[i].uid == v->msgs[i].rec.uid)
			i++;
		if (i == v->n)
			return sc;
	}
	ranks_drop(sc);
	/* Both ascend by UID: one merge keeps what is still in the view. */
	struct sort_msg *m = xcalloc(v->n ? v->n : 1, sizeof(*m));
	size_t j = 0;
	for (size_t i = 0; i < v->n; i++) {
		uint32_t uid = v->msgs[i].rec.uid;
		while (j < sc->n && sc->m[j].uid < uid)
			sort_msg_clear(&sc->m[j++]);
		if (j < sc->n && sc->m[j].uid == uid)
			m[i] = sc->m[j++];
		else
			m[i].uid = uid;
	}
	while (j < sc->n)
		sort_msg_clear(&sc->m[j++]);
	free(sc->m);
	sc->m = m;
	sc->n = v->n;
	return sc;
}

void
sort_cache_free(struct sort_cache **scp)
{
	struct sort_cache *sc = *scp;

	if (sc == NULL)
		return;
	for (size_t i = 0; i < sc->n; i++)
		sort_msg_clear(&sc->m[i]);
	ranks_drop(sc);
	arena_free(&sc->id_arena);
	free(sc->id_str);
	free(sc->id_len);
	free(sc->id_tab);
	free(sc->m);
	free(sc);
	*scp = NULL;
}

static uint64_t
id_hash(uint64_t seed, const char *s, size_t len)
{
	uint64_t h = hash_fnv1a64(s, len, seed);

	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdULL;
	h ^= h >> 33;
	return h;
}

/* The number of message id s (made now if new), 1-based. */
static uint32_t
intern(struct sort_cache *sc, const char *s, size_t len)
{
	if ((sc->n_ids + 1) * 2 > sc->id_cap) {
		size_t cap = sc->id_cap ? sc->id_cap * 2 : 1024;
		uint32_t *tab = xcalloc(cap, sizeof(*tab));
		for (size_t i = 0; i < sc->id_cap; i++) {
			uint32_t id = sc->id_tab[i];
			if (id == 0)
				continue;
			size_t j = id_hash(sc->id_seed, sc->id_str[id - 1], sc->id_len[id - 1]) &
			           (cap - 1);
			while (tab[j] != 0)
				j = (j + 1) & (cap - 1);
			tab[j] = id;
		}
		free(sc->id_tab);
		sc->id_tab = tab;
		sc->id_cap = cap;
		sc->id_str = xrealloc(sc->id_str, cap / 2 * sizeof(*sc->id_str));
		sc->id_len = xrealloc(sc->id_len, cap / 2 * sizeof(*sc->id_len));
	}
	size_t j = id_hash(sc->id_seed, s, len) & (sc->id_cap - 1);
	for (;;) {
		uint32_t id = sc->id_tab[j];
		if (id == 0)
			break;
		if (sc->id_len[id - 1] == len && memcmp(sc->id_str[id - 1], s, len) == 0)
			return id;
		j = (j + 1) & (sc->id_cap - 1);
	}
	sc->id_str[sc->n_ids] = arena_strndup(&sc->id_arena, s, len);
	sc->id_len[sc->n_ids] = (uint32_t)len;
	sc->id_tab[j] = (uint32_t)++sc->n_ids;
	return (uint32_t)sc->n_ids;
}

/* Bytes of the header block of data[0..len), its blank line included. */
static size_t
header_len(const uint8_t *data, size_t len)
{
	if (len > 0 && data[0] == '\n')
		return 1;
	if (len > 1 && data[0] == '\r' && data[1] == '\n')
		return 2;
	for (size_t i = 1; i < len; i++) {
		const uint8_t *p = memchr(data + i, '\n', len - i);
		if (p == NULL)
			break;
		i = (size_t)(p - data);
		if (i + 1 < len && data[i + 1] == '\n')
			return i + 2;
		if (i + 2 < len && data[i + 1] == '\r' && data[i + 2] == '\n')
			return i + 3;
	}
	return len;
}

/*
 * Message ids "<...>" in v[0..len), each appended NUL-terminated to out;
 * with max 1 only the first. Only the last SORT_MAX_REFS are kept (the
 * closest ancestors). Returns how many.
 */
static unsigned
msg_ids(const char *v, size_t len, unsigned max, struct buf *out)
{
	size_t start = out->len;
	unsigned n = 0;

	for (size_t i = 0; i < len;) {
		const char *lt = memchr(v + i, '<', len - i);
		if (lt == NULL)
			break;
		size_t a = (size_t)(lt - v) + 1, b = a;
		while (b < len && v[b] != '>' && v[b] != '<' && v[b] != ' ' && v[b] != '\t' &&
		       v[b] != '\r' && v[b] != '\n' && v[b] != '\0')
			b++;
		if (b < len && v[b] == '>' && b > a && b - a <= SORT_MAX_ID) {
			if (n == max) {
				/* drop the oldest id kept */
				const uint8_t *z =
				    memchr(out->data + start, '\0', out->len - start);
				size_t cut = (size_t)(z - (out->data + start)) + 1;
				memmove(out->data + start, out->data + start + cut,
				        out->len - start - cut);
				buf_truncate(out, out->len - cut);
				n--;
			}
			buf_append(out, v + a, b - a);
			buf_append_byte(out, '\0');
			n++;
			if (max == 1)
				break;
		}
		i = b > a ? b : a;
	}
	return n;
}

struct keys {
	struct buf blob;
	struct sort_msg *m;
};

static void
key_begin(struct keys *k, enum sort_field f)
{
	k->m->off[f] = (uint32_t)k->blob.len;
}

static void
key_end(struct keys *k, enum sort_field f)
{
	k->m->len[f] = (uint32_t)(k->blob.len - k->m->off[f]);
	buf_append_byte(&k->blob, '\0');
}

static void
address_keys(struct keys *k, const struct message *msg, const char *field, enum sort_field f,
             enum sort_field df)
{
	struct buf raw = BUF_INIT(0), name = BUF_INIT(0), mbox = BUF_INIT(0), host = BUF_INIT(0);
	struct buf t = BUF_INIT(0);
	bool have = message_header_get(msg, NULL, field, false, &raw) == 0 &&
	            message_address_first(buf_cstr(&raw), raw.len, &name, &mbox, &host) == 0;

	key_begin(k, f);
	if (have)
		collate_key((const char *)mbox.data, mbox.len, &k->blob);
	key_end(k, f);
	if (df == SF_N)
		goto done;
	key_begin(k, df);
	if (have && name.len > 0)
		message_decode_words(buf_cstr(&name), name.len, &t);
	if (have && t.len == 0) {
		buf_append(&t, mbox.data, mbox.len);
		buf_append_byte(&t, '@');
		buf_append(&t, host.data, host.len);
	}
	collate_key((const char *)t.data, t.len, &k->blob);
	key_end(k, df);
done:
	buf_free(&t);
	buf_free(&host);
	buf_free(&mbox);
	buf_free(&name);
	buf_free(&raw);
}

static void
fill_keys(struct sort_cache *sc, struct sort_msg *sm, const struct message *msg)
{
	struct keys k = {BUF_INIT(0), sm};
	struct buf b = BUF_INIT(0), base = BUF_INIT(0);
	int64_t t;

	if (msg != NULL && message_header_get(msg, NULL, "Date", false, &b) == 0 &&
	    message_parse_date(buf_cstr(&b), b.len, &t) == 0)
		sm->date = t;
	buf_reset(&b);
	key_begin(&k, SF_SUBJECT);
	if (msg != NULL && message_header_get(msg, NULL, "Subject", true, &b) == 0) {
		collate_base_subject(buf_cstr(&b), b.len, &base, &sm->reply);
		collate_key((const char *)base.data, base.len, &k.blob);
	}
	key_end(&k, SF_SUBJECT);
	if (msg != NULL) {
		address_keys(&k, msg, "From", SF_FROM, SF_DFROM);
		address_keys(&k, msg, "To", SF_TO, SF_DTO);
		address_keys(&k, msg, "Cc", SF_CC, SF_N);
	} else {
		for (enum sort_field f = SF_FROM; f <= SF_DTO; f++) {
			key_begin(&k, f);
			key_end(&k, f);
		}
	}
	buf_reset(&b);
	key_begin(&k, SF_MSGID);
	if (msg != NULL && message_header_get(msg, NULL, "Message-ID", false, &b) == 0) {
		msg_ids(buf_cstr(&b), b.len, 1, &k.blob);
		if (k.blob.len > k.m->off[SF_MSGID])
			buf_truncate(&k.blob, k.blob.len - 1); /* key_end() adds the NUL */
	}
	key_end(&k, SF_MSGID);
	buf_reset(&b);
	key_begin(&k, SF_REFS);
	if (msg != NULL && message_header_get(msg, NULL, "References", false, &b) == 0)
		sm->n_refs = (uint16_t)msg_ids(buf_cstr(&b), b.len, SORT_MAX_REFS, &k.blob);
	buf_reset(&b);
	/* RFC 5256: without usable References, the first id of In-Reply-To. */
	if (msg != NULL && sm->n_refs == 0 &&
	    message_header_get(msg, NULL, "In-Reply-To", false, &b) == 0)
		sm->n_refs = (uint16_t)msg_ids(buf_cstr(&b), b.len, 1, &k.blob);
	sm->len[SF_REFS] = (uint32_t)(k.blob.len - sm->off[SF_REFS]);
	buf_append_byte(&k.blob, '\0');
	sm->blob = (char *)buf_steal(&k.blob, NULL);
	sm->loaded = true;
	size_t len;
	const char *id = sort_str(sm, SF_MSGID, &len);
	if (len > 0)
		sm->mid = intern(sc, id, len);
	const char *r = sort_str(sm, SF_REFS, &len);
	sm->refs = xmalloc((sm->n_refs ? sm->n_refs : 1) * sizeof(*sm->refs));
	for (unsigned i = 0; i < sm->n_refs; i++) {
		size_t rl = strlen(r);
		sm->refs[i] = intern(sc, r, rl);
		r += rl + 1;
	}
	buf_free(&base);
	buf_free(&b);
}

int
sort_cache_load(struct imap_cmd *cmd, struct sort_cache *sc, const uint32_t *idx, size_t n,
                uint64_t *budget)
{
	struct imap_view *v = &cmd->s->view;
	const struct roost_config *cfg = cmd->s->sv->cfg;
	struct message_limits lim = {cfg->mime_max_depth, cfg->mime_max_parts, cfg->max_header_size,
	                             cfg->max_header_fields};

	for (size_t i = 0; i < n; i++) {
		struct sort_msg *sm = &sc->m[idx[i]];
		struct msg_view mv;
		struct message *msg = NULL;

		if (sm->loaded)
			continue;
		ranks_drop(sc);
		sm->date = v->msgs[idx[i]].rec.internal_date;
		if (mailbox_read(v->mb, sm->uid, &mv) < 0) {
			fill_keys(sc, sm, NULL);
			continue;
		}
		size_t hl = header_len(mv.data, mv.len);
		if (hl > *budget) {
			msg_view_release(&mv);
			return ROOST_ETOOBIG;
		}
		*budget -= hl;
		if (message_parse(mv.data, hl, &lim, &msg) < 0)
			msg = NULL;
		fill_keys(sc, sm, msg);
		message_free(&msg);
		msg_view_release(&mv);
	}
	return 0;
}
