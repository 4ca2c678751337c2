/*
 * THREAD and UID THREAD (RFC 5256) with the ORDEREDSUBJECT and REFERENCES
 * algorithms, over the messages a search selects, from the view's sort
 * key cache (imap_sort.h).
 *
 * Hostile input cannot make the work grow without bound: a message keeps
 * at most SORT_MAX_REFS ancestors, a cyclic References chain is cut where
 * a link would close the loop (each loop test walks up the tree and every
 * step is charged to the command's search_budget, so a deep chain ends in
 * NO [LIMIT] rather than a long walk), message ids are interned once per
 * view (imap_sort.h) and subjects grouped in a table seeded per command, and the tree is pruned,
 * sorted and written with explicit stacks: a chain of 100,000 replies is no deeper on the C stack
 * than a single message.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "roost/collate.h"
#include "roost/config.h"
#include "roost/conn.h"
#include "roost/error.h"
#include "roost/hash.h"
#include "roost/services.h"
#include "roost/xalloc.h"

#include "imap_sort.h"

#define NONE (-1)

struct node {
	int32_t parent, child, next, prev; /* first child, next and previous sibling */
	int32_t hit;                       /* index into the hits, NONE for a dummy */
};

struct thr {
	struct imap_view *v;
	struct sort_cache *sc;
	const uint32_t *idx; /* hits: view indexes, ascending */
	size_t nh;
	struct node *n;
	size_t nn, cap;
	uint64_t *budget;
	bool over;
	uint64_t seed;             /* of the subject table */
	const uint32_t *subj_rank; /* ORDEREDSUBJECT */
};

static const struct sort_msg *
msg_of(const struct thr *t, int32_t node)
{
	return &t->sc->m[t->idx[t->n[node].hit]];
}

static int32_t
new_node(struct thr *t, int32_t hit)
{
	if (t->nn == t->cap) {
		t->cap = t->cap ? t->cap * 2 : 64;
		t->n = xrealloc(t->n, t->cap * sizeof(*t->n));
	}
	t->n[t->nn] = (struct node){NONE, NONE, NONE, NONE, hit};
	return (int32_t)t->nn++;
}

static uint64_t
id_hash(const struct thr *t, const char *s, size_t len)
{
	uint64_t h = hash_fnv1a64(s, len, t->seed);

	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdULL;
	h ^= h >> 33;
	return h;
}

/* Is a an ancestor of b (or b itself)? Each step costs a unit of budget. */
static bool
ancestor(struct thr *t, int32_t a, int32_t b)
{
	for (int32_t x = b; x != NONE; x = t->n[x].parent) {
		if (x == a)
			return true;
		if (*t->budget == 0) {
			t->over = true;
			return true; /* refuse the link; the command fails anyway */
		}
		(*t->budget)--;
	}
	return false;
}

/* Sibling lists are doubly linked, so taking a node out costs O(1) however
 * many siblings it has (a popular parent, the root set). */
static void
unlink_node(struct thr *t, int32_t c)
{
	struct node *x = &t->n[c];

	if (x->parent == NONE)
		return;
	if (x->prev != NONE)
		t->n[x->prev].next = x->next;
	else
		t->n[x->parent].child = x->next;
	if (x->next != NONE)
		t->n[x->next].prev = x->prev;
	x->parent = x->next = x->prev = NONE;
}

static void
link_node(struct thr *t, int32_t p, int32_t c)
{
	t->n[c].parent = p;
	t->n[c].prev = NONE;
	t->n[c].next = t->n[p].child;
	if (t->n[p].child != NONE)
		t->n[t->n[p].child].prev = c;
	t->n[p].child = c;
}

/* (1) Link messages by Message-ID, References and In-Reply-To. Nodes
 * 0..n_ids-1 are the interned message ids of the cache (imap_sort.h). */
static void
build_links(struct thr *t)
{
	for (size_t i = 0; i < t->sc->n_ids; i++)
		new_node(t, NONE);
	for (size_t i = 0; i < t->nh && !t->over; i++) {
		const struct sort_msg *m = &t->sc->m[t->idx[i]];
		int32_t me;

		if (m->mid != 0 && t->n[m->mid - 1].hit == NONE) {
			me = (int32_t)m->mid - 1;
			t->n[me].hit = (int32_t)i;
		} else { /* no id, or a second message with it: a node of its own */
			me = new_node(t, (int32_t)i);
		}
		int32_t prev = NONE;
		for (unsigned k = 0; k < m->n_refs; k++) {
			int32_t c = (int32_t)m->refs[k] - 1;
			if (prev != NONE && t->n[c].parent == NONE && !ancestor(t, c, prev))
				link_node(t, prev, c);
			prev = c;
		}
		if (t->n[me].parent != NONE)
			unlink_node(t, me);
		if (prev != NONE && !ancestor(t, me, prev))
			link_node(t, prev, me);
	}
}

static size_t
count_children(const struct thr *t, int32_t p)
{
	size_t k = 0;

	for (int32_t c = t->n[p].child; c != NONE; c = t->n[c].next)
		k++;
	return k;
}

/* (4) Drop childless dummies; promote a dummy's children into its place,
 * except a root-level dummy with several children. */
static void
prune(struct thr *t, int32_t root)
{
	int32_t *stack = xmalloc(t->nn * sizeof(*stack));
	size_t sp = 0;

	stack[sp++] = root;
	while (sp > 0) {
		int32_t p = stack[--sp];
		int32_t work = t->n[p].child, head = NONE, tail = NONE;

		while (work != NONE) {
			int32_t c = work;
			work = t->n[c].next;
			if (t->n[c].hit == NONE && t->n[c].child == NONE)
				continue;
			if (t->n[c].hit == NONE && (p != root || count_children(t, c) == 1)) {
				/* its children are looked at again, here */
				int32_t last = t->n[c].child;
				while (t->n[last].next != NONE)
					last = t->n[last].next;
				t->n[last].next = work;
				work = t->n[c].child;
				for (int32_t x = work; x != t->n[last].next; x = t->n[x].next)
					t->n[x].parent = p;
				continue;
			}
			t->n[c].next = NONE;
			t->n[c].prev = tail;
			if (tail == NONE)
				head = c;
			else
				t->n[tail].next = c;
			tail = c;
			stack[sp++] = c;
		}
		t->n[p].child = head;
	}
	free(stack);
}

/* The message a node sorts as: itself, or a dummy's first child. */
static int32_t
rep(const struct thr *t, int32_t x)
{
	return t->n[x].hit != NONE ? x : t->n[x].child;
}

static int
date_cmp(const void *pa, const void *pb, void *arg)
{
	const struct thr *t = arg;
	int32_t a = rep(t, *(const int32_t *)pa), b = rep(t, *(const int32_t *)pb);
	int64_t da = msg_of(t, a)->date, db = msg_of(t, b)->date;

	if (da != db)
		return da < db ? -1 : 1;
	return t->n[a].hit < t->n[b].hit ? -1 : t->n[a].hit > t->n[b].hit;
}

/* Sort p's children by sent date (ties by sequence number). */
static void
sort_children(struct thr *t, int32_t p, int32_t **buf, size_t *cap)
{
	size_t k = 0;

	for (int32_t c = t->n[p].child; c != NONE; c = t->n[c].next) {
		if (k == *cap) {
			*cap = *cap ? *cap * 2 : 64;
			*buf = xrealloc(*buf, *cap * sizeof(**buf));
		}
		(*buf)[k++] = c;
	}
	if (k < 2)
		return;
	qsort_r(*buf, k, sizeof(**buf), date_cmp, t);
	t->n[p].child = (*buf)[0];
	for (size_t i = 0; i < k; i++) {
		t->n[(*buf)[i]].next = i + 1 < k ? (*buf)[i + 1] : NONE;
		t->n[(*buf)[i]].prev = i > 0 ? (*buf)[i - 1] : NONE;
	}
}

/* (7) Every set of siblings by date, the deepest first. */
static void
sort_tree(struct thr *t, int32_t root)
{
	int32_t *order = xmalloc(t->nn * sizeof(*order)), *tmp = NULL;
	size_t no = 0, cap = 0;

	order[no++] = root;
	for (size_t i = 0; i < no; i++)
		for (int32_t c = t->n[order[i]].child; c != NONE; c = t->n[c].next)
			order[no++] = c;
	for (size_t i = no; i-- > 0;)
		sort_children(t, order[i], &tmp, &cap);
	free(tmp);
	free(order);
}

static void
subject_of(const struct thr *t, int32_t x, const char **s, size_t *len)
{
	*s = sort_str(msg_of(t, rep(t, x)), SF_SUBJECT, len);
}

static bool
is_reply(const struct thr *t, int32_t x)
{
	return t->n[x].hit != NONE && msg_of(t, x)->reply;
}

/* (6) Gather root-level threads whose base subjects are equal. */
static void
group_subjects(struct thr *t, int32_t root)
{
	size_t nr = count_children(t, root), cap = 16, k = 0;
	int32_t *roots = xmalloc((nr ? nr : 1) * sizeof(*roots));

	for (int32_t c = t->n[root].child; c != NONE; c = t->n[c].next)
		roots[k++] = c;
	while (cap < nr * 2)
		cap *= 2;
	int32_t *tab = xmalloc(cap * sizeof(*tab));
	for (size_t i = 0; i < cap; i++)
		tab[i] = NONE;
		/* the table holds root positions; subjects are read through them */
#define SLOT(s, l)                                                                                 \
	({                                                                                         \
		size_t i_ = id_hash(t, s, l) & (cap - 1);                                          \
		while (tab[i_] != NONE) {                                                          \
			const char *ts_;                                                           \
			size_t tl_;                                                                \
			subject_of(t, roots[tab[i_]], &ts_, &tl_);                                 \
			if (tl_ == l && memcmp(ts_, s, l) == 0)                                    \
				break;                                                             \
			i_ = (i_ + 1) & (cap - 1);                                                 \
		}                                                                                  \
		i_;                                                                                \
	})
	for (size_t i = 0; i < nr; i++) {
		const char *s;
		size_t len;
		subject_of(t, roots[i], &s, &len);
		if (len == 0)
			continue;
		size_t sl = SLOT(s, len);
		if (tab[sl] == NONE) {
			tab[sl] = (int32_t)i;
			continue;
		}
		int32_t old = roots[tab[sl]], cur = roots[i];
		if ((t->n[cur].hit == NONE && t->n[old].hit != NONE) ||
		    (t->n[cur].hit != NONE && t->n[old].hit != NONE && is_reply(t, old) &&
		     !is_reply(t, cur)))
			tab[sl] = (int32_t)i;
	}
	for (size_t i = 0; i < nr; i++) {
		const char *s;
		size_t len;
		int32_t cur = roots[i];
		subject_of(t, cur, &s, &len);
		if (len == 0)
			continue;
		size_t sl = SLOT(s, len);
		int32_t old = roots[tab[sl]];
		if (old == cur)
			continue;
		unlink_node(t, cur);
		if (t->n[old].hit == NONE && t->n[cur].hit == NONE) {
			while (t->n[cur].child != NONE) {
				int32_t c = t->n[cur].child;
				unlink_node(t, c);
				link_node(t, old, c);
			}
		} else if (t->n[old].hit == NONE) {
			link_node(t, old, cur);
		} else if (is_reply(t, cur) && !is_reply(t, old)) {
			link_node(t, old, cur);
		} else {
			/* a new dummy takes the table message's place */
			int32_t d = new_node(t, NONE);
			unlink_node(t, old);
			link_node(t, root, d);
			link_node(t, d, old);
			link_node(t, d, cur);
			roots[tab[sl]] = d;
		}
	}
#undef SLOT
	free(tab);
	free(roots);
}

static uint32_t
number(const struct thr *t, int32_t x, bool uid)
{
	uint32_t vi = t->idx[t->n[x].hit];
	return uid ? t->v->msgs[vi].rec.uid : vi + 1;
}

enum { OP_NODE, OP_OPEN, OP_CLOSE };

/* Write the threads under root as RFC 5256 thread-lists. */
static void
write_threads(const struct thr *t, int32_t root, bool uid, struct buf *b)
{
	struct op {
		int32_t node;
		int kind;
	} *st = xmalloc((3 * t->nn + 3) * sizeof(*st));
	size_t sp = 0;

	for (int32_t r = t->n[root].child; r != NONE; r = t->n[r].next) {
		buf_append_byte(b, '(');
		st[sp++] = (struct op){r, OP_NODE};
		while (sp > 0) {
			struct op o = st[--sp];
			if (o.kind == OP_CLOSE) {
				buf_append_byte(b, ')');
				continue;
			}
			if (o.kind == OP_OPEN) {
				if (b->data[b->len - 1] != '(' && b->data[b->len - 1] != ')')
					buf_append_byte(b, ' ');
				buf_append_byte(b, '(');
				continue;
			}
			int32_t x = o.node, c = t->n[x].child;
			if (t->n[x].hit != NONE) {
				if (b->data[b->len - 1] != '(')
					buf_append_byte(b, ' ');
				buf_append_uint(b, number(t, x, uid));
				if (c != NONE && t->n[c].next == NONE) {
					st[sp++] = (struct op){c, OP_NODE};
					continue;
				}
			}
			/* several children (or a dummy's): each its own list,
			 * pushed last first */
			size_t k = count_children(t, x), base = sp;
			sp += 3 * k;
			size_t j = k;
			for (int32_t y = c; y != NONE; y = t->n[y].next) {
				j--;
				st[base + 3 * j + 2] = (struct op){y, OP_OPEN};
				st[base + 3 * j + 1] = (struct op){y, OP_NODE};
				st[base + 3 * j] = (struct op){y, OP_CLOSE};
			}
		}
		buf_append_byte(b, ')');
	}
	free(st);
}

static void
thread_references(struct thr *t, bool uid, struct buf *out)
{
	build_links(t);
	if (t->over)
		return;
	int32_t root = new_node(t, NONE);
	/* (2) the root set: every node without a parent */
	for (int32_t i = 0; i < root; i++)
		if (t->n[i].parent == NONE)
			link_node(t, root, i);
	prune(t, root);
	/* (5) root set by date, a dummy's children first */
	for (int32_t c = t->n[root].child; c != NONE; c = t->n[c].next)
		if (t->n[c].hit == NONE) {
			int32_t *tmp = NULL;
			size_t cap = 0;
			sort_children(t, c, &tmp, &cap);
			free(tmp);
		}
	{
		int32_t *tmp = NULL;
		size_t cap = 0;
		sort_children(t, root, &tmp, &cap);
		free(tmp);
	}
	group_subjects(t, root);
	sort_tree(t, root);
	write_threads(t, root, uid, out);
}

static int
subj_date_cmp(const void *pa, const void *pb, void *arg)
{
	const struct thr *t = arg;
	uint32_t a = *(const uint32_t *)pa, b = *(const uint32_t *)pb;
	const struct sort_msg *ma = &t->sc->m[a], *mb = &t->sc->m[b];

	if (t->subj_rank[a] != t->subj_rank[b])
		return t->subj_rank[a] < t->subj_rank[b] ? -1 : 1;
	if (ma->date != mb->date)
		return ma->date < mb->date ? -1 : 1;
	return a < b ? -1 : a > b;
}

/* ORDEREDSUBJECT: by base subject, then date; each subject one thread
 * whose first message is the parent of the others. */
static void
thread_orderedsubject(struct thr *t, bool uid, struct buf *out)
{
	uint32_t *ord = xmalloc((t->nh ? t->nh : 1) * sizeof(*ord));

	memcpy(ord, t->idx, t->nh * sizeof(*ord));
	t->subj_rank = sort_cache_rank(t->sc, SF_SUBJECT);
	qsort_r(ord, t->nh, sizeof(*ord), subj_date_cmp, t);
	/* one node per thread, ordered by its first message's date */
	int32_t root = new_node(t, NONE);
	for (size_t i = 0; i < t->nh;) {
		size_t j = i + 1;
		while (j < t->nh && t->subj_rank[ord[j]] == t->subj_rank[ord[i]])
			j++;
		/* hits are view indexes here: find each one's hit number */
		int32_t top = NONE, prev = NONE;
		for (size_t k = i; k < j; k++) {
			size_t lo = 0, hi = t->nh;
			while (lo < hi) {
				size_t mid = (lo + hi) / 2;
				if (t->idx[mid] < ord[k])
					lo = mid + 1;
				else
					hi = mid;
			}
			int32_t x = new_node(t, (int32_t)lo);
			if (top == NONE) {
				top = x;
				link_node(t, root, x);
			} else {
				/* children in date order: append */
				t->n[x].parent = top;
				t->n[x].prev = prev == top ? NONE : prev;
				if (prev == top)
					t->n[top].child = x;
				else
					t->n[prev].next = x;
			}
			prev = x;
		}
		i = j;
	}
	int32_t *tmp = NULL;
	size_t cap = 0;
	sort_children(t, root, &tmp, &cap);
	free(tmp);
	free(ord);
	write_threads(t, root, uid, out);
}

void
cmd_thread(struct imap_cmd *cmd)
{
	struct imap_view *v = &cmd->s->view;
	const struct imap_arg *a = cmd->p.args;
	size_t n = cmd->p.n;
	bool refs;

	if (n < 3 || a[0].type != ARG_ATOM) {
		imap_bad(cmd, "Missing threading algorithm");
		return;
	}
	if (imap_arg_atom_eq(&a[0], "REFERENCES")) {
		refs = true;
	} else if (imap_arg_atom_eq(&a[0], "ORDEREDSUBJECT")) {
		refs = false;
	} else {
		imap_bad(cmd, "Unknown threading algorithm");
		return;
	}
	if (imap_sort_charset(cmd, &a[1]) < 0)
		return;
	uint32_t *idx;
	size_t nh;
	struct sort_cache *sc;
	if (imap_sort_select(cmd, a + 2, n - 2, &idx, &nh, &sc) < 0)
		return;
	uint64_t budget = cmd->s->sv->cfg->imap_search_budget;
	struct thr t = {.v = v, .sc = sc, .idx = idx, .nh = nh, .budget = &budget};
	struct buf b = BUF_INIT(0);
	t.seed = 0xcbf29ce484222325ULL ^ (uint64_t)time(NULL) ^ (uint64_t)(uintptr_t)&t;
	buf_append_str(&b, "* THREAD ");
	if (refs)
		thread_references(&t, cmd->uid, &b);
	else
		thread_orderedsubject(&t, cmd->uid, &b);
	free(t.n);
	free(idx);
	if (t.over) {
		buf_free(&b);
		imap_search_limit(cmd, 0);
		return;
	}
	if (b.data[b.len - 1] == ' ')
		buf_truncate(&b, b.len - 1);
	buf_append_str(&b, "\r\n");
	imap_sort_reply(cmd, &b);
}
