/*
 * SORT and UID SORT (RFC 5256) with the DISPLAYFROM and DISPLAYTO keys
 * (RFC 5957), compared under i;unicode-casemap (RFC 5051, core/collate.c),
 * and the ESORT/PARTIAL replies. The sort key cache that THREAD shares is
 * imap_sort_cache.c.
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
