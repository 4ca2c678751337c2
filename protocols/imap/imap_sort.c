/*
 * SORT and UID SORT (RFC 5256) with the DISPLAYFROM and DISPLAYTO keys
 * (RFC 5957), compared under i;unicode-casemap (RFC 5051, core/collate.c),
 * and the sort key cache that THREAD shares (imap_sort.h says where the
 * keys live and what invalidates them).
 *
 * The messages are chosen by the SEARCH engine (imap_search.c) under the
 * same key cap and [imap] search_budget; reading the headers of messages
 * whose keys are not cached yet is charged to that budget too, so one
 * command's work is bounded however large the mailbox. A cached SORT is
 * a qsort() over keys already in memory.
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

/* ------------------------------------------------------------------ */

/*
 * Each hit becomes one row of int64s: its key for each criterion (a time,
 * a size, or a collation rank from the cache) and last its view index.
 * Sorting the rows touches contiguous memory only, where comparing through
 * the cache entries would jump across the heap on every comparison.
 */
struct sort_ctx {
	const struct sort_crit *crit;
	size_t n_crit;
};

static int
row_cmp(const void *pa, const void *pb, void *arg)
{
	const struct sort_ctx *x = arg;
	const int64_t *a = pa, *b = pb;

	for (size_t i = 0; i < x->n_crit; i++) {
		if (a[i] != b[i]) {
			int r = a[i] < b[i] ? -1 : 1;
			return x->crit[i].reverse ? -r : r;
		}
	}
	/* RFC 5256: exact ties go in sequence number order. */
	return a[x->n_crit] < b[x->n_crit] ? -1 : a[x->n_crit] > b[x->n_crit];
}

void
sort_indexes(struct imap_view *v, struct sort_cache *sc, uint32_t *idx, size_t n,
             const struct sort_crit *crit, size_t n_crit)
{
	static const enum sort_field field[] = {
	    [SK_CC] = SF_CC,           [SK_FROM] = SF_FROM,   [SK_TO] = SF_TO,
	    [SK_SUBJECT] = SF_SUBJECT, [SK_DFROM] = SF_DFROM, [SK_DTO] = SF_DTO,
	};
	struct sort_ctx x = {crit, n_crit};
	size_t w = n_crit + 1;
	int64_t *rows = xmalloc((n ? n : 1) * w * sizeof(*rows));

	for (size_t c = 0; c < n_crit; c++) {
		enum sort_key k = crit[c].key;
		const uint32_t *rank = NULL;
		if (k != SK_ARRIVAL && k != SK_DATE && k != SK_SIZE)
			rank = sort_cache_rank(sc, field[k]);
		for (size_t i = 0; i < n; i++) {
			int64_t *row = rows + i * w;
			uint32_t ix = idx[i];
			if (k == SK_ARRIVAL)
				row[c] = v->msgs[ix].rec.internal_date;
			else if (k == SK_DATE)
				row[c] = sc->m[ix].date;
			else if (k == SK_SIZE)
				row[c] = (int64_t)v->msgs[ix].rec.size;
			else
				row[c] = rank[ix];
		}
	}
	for (size_t i = 0; i < n; i++)
		rows[i * w + n_crit] = idx[i];
	qsort_r(rows, n, w * sizeof(*rows), row_cmp, &x);
	for (size_t i = 0; i < n; i++)
		idx[i] = (uint32_t)rows[i * w + n_crit];
	free(rows);
}

static int
parse_criteria(const struct imap_arg *a, struct sort_crit *crit, size_t *n_r)
{
	static const struct {
		const char *name;
		enum sort_key key;
	} keys[] = {
	    {"ARRIVAL", SK_ARRIVAL}, {"CC", SK_CC},
	    {"DATE", SK_DATE},       {"FROM", SK_FROM},
	    {"SIZE", SK_SIZE},       {"SUBJECT", SK_SUBJECT},
	    {"TO", SK_TO},           {"DISPLAYFROM", SK_DFROM},
	    {"DISPLAYTO", SK_DTO},
	};
	size_t n = 0;
	bool reverse = false;

	if (a->type != ARG_LIST || a->n == 0 || a->n > 2 * SORT_MAX_CRITERIA)
		return ROOST_EINVAL;
	for (size_t i = 0; i < a->n; i++) {
		const struct imap_arg *w = &a->list[i];
		if (imap_arg_atom_eq(w, "REVERSE")) {
			if (reverse)
				return ROOST_EINVAL;
			reverse = true;
			continue;
		}
		size_t k = 0;
		while (k < sizeof(keys) / sizeof(keys[0]) && !imap_arg_atom_eq(w, keys[k].name))
			k++;
		if (k == sizeof(keys) / sizeof(keys[0]) || n == SORT_MAX_CRITERIA)
			return ROOST_EINVAL;
		crit[n].key = keys[k].key;
		crit[n].reverse = reverse;
		n++;
		reverse = false;
	}
	if (reverse || n == 0)
		return ROOST_EINVAL;
	*n_r = n;
	return 0;
}

int
imap_sort_charset(struct imap_cmd *cmd, const struct imap_arg *a)
{
	if (!imap_arg_is_string(a)) {
		imap_bad(cmd, "Missing charset");
		return ROOST_EINVAL;
	}
	if (strcasecmp(a->str, "UTF-8") != 0 && strcasecmp(a->str, "US-ASCII") != 0) {
		imap_tagged(cmd, "NO", "[BADCHARSET (UTF-8 US-ASCII)] Unsupported charset");
		return ROOST_ENOTSUP;
	}
	return 0;
}

/* A reply already formatted, handed to the connection as it drains. */
struct sort_out {
	uint8_t *text;
	size_t len, off;
};

#define SORT_PIECE 16384

static void
sort_out_free(struct imap_cmd *cmd)
{
	struct sort_out *o = cmd->state;

	if (o != NULL)
		free(o->text);
	cmd->state = NULL;
}

static void
sort_out_step(struct imap_cmd *cmd)
{
	struct sort_out *o = cmd->state;

	while (o->off < o->len) {
		if (conn_output_full(cmd->c)) {
			imap_yield(cmd, sort_out_step);
			return;
		}
		size_t k = o->len - o->off < SORT_PIECE ? o->len - o->off : SORT_PIECE;
		conn_write(cmd->c, o->text + o->off, k);
		o->off += k;
	}
	sort_out_free(cmd);
	imap_tagged(cmd, "OK", "%s completed", cmd->p.name);
}

void
imap_sort_reply(struct imap_cmd *cmd, struct buf *text)
{
	struct sort_out *o = arena_alloc(&cmd->arena, sizeof(*o));

	o->text = buf_steal(text, &o->len);
	cmd->state = o;
	cmd->state_free = sort_out_free;
	sort_out_step(cmd);
}

/*
 * Run the search keys a[0..n) and load the sort keys of the hits: the
 * view indexes of the hits (heap) in *idx_r. Replies itself and returns
 * < 0 on any failure.
 */
int
imap_sort_select(struct imap_cmd *cmd, const struct imap_arg *a, size_t n, uint32_t **idx_r,
                 size_t *n_r, struct sort_cache **sc_r)
{
	struct imap_search *sr;
	uint64_t budget = cmd->s->sv->cfg->imap_search_budget;
	uint32_t *idx;
	size_t nh;

	if (imap_search_parse(cmd, a, n, &sr) < 0)
		return ROOST_EINVAL;
	if (imap_search_run(cmd, sr, &budget, &idx, &nh, NULL) < 0)
		return ROOST_ETOOBIG;
	struct sort_cache *sc = sort_cache_sync(&cmd->s->view);
	if (sort_cache_load(cmd, sc, idx, nh, &budget) < 0) {
		free(idx);
		imap_search_limit(cmd, 0);
		return ROOST_ETOOBIG;
	}
	*idx_r = idx;
	*n_r = nh;
	*sc_r = sc;
	return 0;
}

/* ESORT (RFC 5267): MIN and MAX are the first and last in sort order, ALL
 * the sorted numbers as a sequence set (a run "4:6" only where they
 * ascend by one). */
static void
esort_reply(struct imap_cmd *cmd, unsigned ret, const struct imap_partial *partial,
            const uint32_t *idx, size_t nh, struct buf *b)
{
	struct imap_view *v = &cmd->s->view;
	bool uid = cmd->uid;
#define NUM(i) (uid ? v->msgs[idx[i]].rec.uid : idx[i] + 1)

	buf_printf(b, "* ESEARCH (TAG \"%s\")%s", cmd->p.tag, uid ? " UID" : "");
	if (nh > 0 && (ret & IMAP_RET_MIN))
		buf_printf(b, " MIN %u", NUM(0));
	if (nh > 0 && (ret & IMAP_RET_MAX))
		buf_printf(b, " MAX %u", NUM(nh - 1));
	if (ret & IMAP_RET_COUNT)
		buf_printf(b, " COUNT %zu", nh);
	if (ret & IMAP_RET_PARTIAL) {
		uint32_t *nums = xmalloc((nh ? nh : 1) * sizeof(*nums));
		for (size_t i = 0; i < nh; i++)
			nums[i] = NUM(i);
		imap_partial_format(b, partial, nums, nh);
		free(nums);
	}
	if (nh > 0 && (ret & IMAP_RET_ALL)) {
		buf_append_str(b, " ALL ");
		for (size_t i = 0; i < nh;) {
			size_t j = i;
			while (j + 1 < nh && NUM(j + 1) == NUM(j) + 1)
				j++;
			if (i > 0)
				buf_append_byte(b, ',');
			if (j == i)
				buf_printf(b, "%u", NUM(i));
			else
				buf_printf(b, "%u:%u", NUM(i), NUM(j));
			i = j + 1;
		}
	}
#undef NUM
	buf_append_str(b, "\r\n");
}

/* A SORT while its search runs (in steps, as SEARCH: INPROGRESS). */
struct sort_run {
	struct imap_search_job job;
	unsigned ret;
	struct imap_partial partial;
	bool esort;
	size_t keys; /* where the search keys start in cmd->p.args */
	size_t n_crit;
	struct sort_crit crit[SORT_MAX_CRITERIA];
};

static void
sort_run_free(struct imap_cmd *cmd)
{
	struct sort_run *r = cmd->state;

	if (r != NULL)
		imap_search_job_free(&r->job);
	cmd->state = NULL;
}

/* The hits are known: their sort keys, the order and the reply. */
static void
sort_finish(struct imap_cmd *cmd, struct sort_run *r)
{
	struct imap_view *v = &cmd->s->view;
	const struct imap_arg *a = cmd->p.args + r->keys;
	size_t n = cmd->p.n - r->keys;
	unsigned ret = r->ret;
	uint32_t *idx = r->job.hits;
	size_t nh = r->job.nh;
	uint64_t budget = r->job.budget;

	r->job.hits = NULL; /* ours now */
	cmd->state = NULL;
	cmd->state_free = NULL;
	struct sort_cache *sc = sort_cache_sync(v);
	if (sort_cache_load(cmd, sc, idx, nh, &budget) < 0) {
		free(idx);
		imap_search_limit(cmd, 0);
		if (ret & IMAP_RET_SAVE) /* RFC 5182: a failed SAVE leaves $ empty */
			searchres_clear(v);
		return;
	}
	sort_indexes(v, sc, idx, nh, r->crit, r->n_crit);

	struct buf b = BUF_INIT(0);
	if ((ret & IMAP_RET_UPDATE) && (ret & IMAP_RET_PARTIAL))
		buf_printf(&b, "* OK [NOUPDATE \"%s\"] No updates of a PARTIAL result\r\n",
		           cmd->p.tag);
	else if ((ret & IMAP_RET_UPDATE) && context_add(cmd, a, n, r->crit, r->n_crit, idx, nh) < 0)
		buf_printf(&b, "* OK [NOUPDATE \"%s\"] No more search contexts\r\n", cmd->p.tag);
	if (ret & IMAP_RET_SAVE) {
		imap_search_save(v, ret, &r->partial, idx, nh);
		ret &= ~(unsigned)IMAP_RET_SAVE;
	}
	if (r->esort && ret != 0) {
		esort_reply(cmd, ret, &r->partial, idx, nh, &b);
	} else if (!r->esort) {
		buf_reserve(&b, 8 + nh * 7);
		buf_append_str(&b, "* SORT");
		for (size_t i = 0; i < nh; i++) {
			buf_append_byte(&b, ' ');
			buf_append_uint(&b, cmd->uid ? v->msgs[idx[i]].rec.uid : idx[i] + 1);
		}
		buf_append_str(&b, "\r\n");
	}
	free(idx);
	imap_sort_reply(cmd, &b);
}

static imap_step_fn sort_run_step;

/* One interval of searching; then INPROGRESS and a later step, or on. */
static void
sort_run_step(struct imap_cmd *cmd)
{
	struct sort_run *r = cmd->state;
	int rc = imap_search_job_run(cmd, &r->job, imap_progress_deadline(cmd->s));

	if (rc == 0) {
		imap_progress_send(cmd, r->job.next, cmd->s->view.n, "Searching");
		imap_yield(cmd, sort_run_step);
		return;
	}
	if (rc < 0) {
		if (r->ret & IMAP_RET_SAVE) /* RFC 5182: a failed SAVE leaves $ empty */
			searchres_clear(&cmd->s->view);
		sort_run_free(cmd);
		cmd->state_free = NULL;
		return;
	}
	sort_finish(cmd, r);
}

void
cmd_sort(struct imap_cmd *cmd)
{
	struct imap_view *v = &cmd->s->view;
	const struct imap_arg *a = cmd->p.args;
	size_t n = cmd->p.n;
	struct sort_run *r = arena_alloc(&cmd->arena, sizeof(*r));
	struct imap_search *sr;

	memset(r, 0, sizeof(*r));
	if (n > 0 && imap_arg_atom_eq(&a[0], "RETURN")) {
		if (n < 2 || imap_search_return(cmd, &a[1], &r->ret, &r->partial) < 0) {
			if (n < 2)
				imap_bad(cmd, "Invalid RETURN options");
			return;
		}
		r->esort = true;
		a += 2;
		n -= 2;
	}
	if ((r->ret & IMAP_RET_UPDATE) && !cmd->uid) {
		imap_bad(cmd, "UPDATE needs UID SORT");
		return;
	}
	if (n < 3 || parse_criteria(&a[0], r->crit, &r->n_crit) < 0) {
		imap_bad(cmd, "Invalid sort criteria");
		goto fail;
	}
	if (imap_sort_charset(cmd, &a[1]) < 0 || imap_search_parse(cmd, a + 2, n - 2, &sr) < 0)
		goto fail;
	r->keys = (size_t)(a + 2 - cmd->p.args);
	imap_search_job_init(cmd, &r->job, sr, cmd->s->sv->cfg->imap_search_budget);
	cmd->state = r;
	cmd->state_free = sort_run_free;
	sort_run_step(cmd);
	return;
fail:
	if (r->ret & IMAP_RET_SAVE) /* RFC 5182: a failed SAVE leaves $ empty */
		searchres_clear(v);
}
