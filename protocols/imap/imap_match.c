/*
 * LIST/LSUB mailbox patterns (RFC 3501 6.3.8): '*' matches anything, '%'
 * anything but the hierarchy separator '/'.
 *
 * A recursive matcher backtracks: "*a*a*a...b" against a long name takes
 * time exponential in the number of wildcards. Here the pattern is compiled
 * into a small NFA whose states are pattern positions, and a name is run
 * through it once, keeping the set of live states as a bit set. The cost is
 * O(name length x pattern length / 64) words, whatever the pattern.
 * (The two-pointer glob algorithm is linear for '*' alone, but its restart
 * is wrong once '%' may not cross a separator that '*' may.)
 */
#include <stdlib.h>
#include <string.h>

#include "roost/error.h"
#include "roost/xalloc.h"

#include "imap_impl.h"

#define WBITS 64

enum tok { T_LIT, T_STAR, T_PCT };

struct imap_match {
	size_t k;            /* tokens; state k accepts */
	size_t words;        /* 64-bit words of a state set (k + 1 bits) */
	uint64_t *star;      /* states whose token is '*' */
	uint64_t *pct;       /* states whose token is '%' */
	uint64_t *lits;      /* one set per distinct literal byte */
	uint8_t lit_of[256]; /* byte -> 1 + index into lits, 0 = none */
};

static void
set_bit(uint64_t *s, size_t i)
{
	s[i / WBITS] |= (uint64_t)1 << (i % WBITS);
}

int
imap_match_compile(struct arena *a, const char *pat, size_t len, struct imap_match **m_r)
{
	struct imap_match *m;
	enum tok *t;
	uint8_t *lit;
	size_t k = 0, n_lits = 0;

	*m_r = NULL;
	if (len > IMAP_MAX_PATTERN)
		return ROOST_ETOOBIG;
	t = arena_alloc(a, (len + 1) * sizeof(*t));
	lit = arena_alloc(a, len + 1);
	/* A run of wildcards is one token: '*' if it holds one, else '%'. */
	for (size_t i = 0; i < len; i++) {
		char c = pat[i];

		if (c == '*' || c == '%') {
			enum tok w = c == '*' ? T_STAR : T_PCT;

			if (k > 0 && t[k - 1] != T_LIT) {
				if (w == T_STAR)
					t[k - 1] = T_STAR;
				continue;
			}
			t[k++] = w;
		} else {
			lit[k] = (uint8_t)c;
			t[k++] = T_LIT;
		}
	}
	m = arena_alloc(a, sizeof(*m));
	m->k = k;
	m->words = (k + 1 + WBITS - 1) / WBITS;
	m->star = arena_alloc(a, m->words * sizeof(uint64_t));
	m->pct = arena_alloc(a, m->words * sizeof(uint64_t));
	for (size_t i = 0; i < k; i++)
		if (t[i] == T_LIT && m->lit_of[lit[i]] == 0)
			m->lit_of[lit[i]] = (uint8_t)++n_lits;
	/* at most 255 distinct bytes: '*' and '%' never count */
	m->lits = arena_alloc(a, (n_lits ? n_lits : 1) * m->words * sizeof(uint64_t));
	for (size_t i = 0; i < k; i++) {
		if (t[i] == T_STAR)
			set_bit(m->star, i);
		else if (t[i] == T_PCT)
			set_bit(m->pct, i);
		else
			set_bit(m->lits + (m->lit_of[lit[i]] - 1) * m->words, i);
	}
	*m_r = m;
	return 0;
}

static const uint64_t *
lit_set(const struct imap_match *m, uint8_t c)
{
	return m->lit_of[c] ? m->lits + (m->lit_of[c] - 1) * m->words : NULL;
}

static uint8_t
ascii_other_case(uint8_t c)
{
	if (c >= 'a' && c <= 'z')
		return (uint8_t)(c - 'a' + 'A');
	if (c >= 'A' && c <= 'Z')
		return (uint8_t)(c - 'A' + 'a');
	return c;
}

/* s |= (s & wild) << 1: a wildcard may match nothing. Runs of wildcards
 * were merged, so one step reaches every state. */
static void
close_wild(const struct imap_match *m, uint64_t *s)
{
	uint64_t carry = 0;

	for (size_t w = 0; w < m->words; w++) {
		uint64_t x = s[w] & (m->star[w] | m->pct[w]);

		s[w] |= (x << 1) | carry;
		carry = x >> (WBITS - 1);
	}
}

bool
imap_match(const struct imap_match *m, const char *name)
{
	uint64_t stack[2][8];
	uint64_t *cur = stack[0], *next = stack[1], *heap = NULL;
	size_t nlen = strlen(name);
	/* INBOX is case-insensitive (RFC 3501 5.1), and so is the INBOX part
	 * of its children's names. */
	size_t fold = 0;
	bool ok;

	if (strncmp(name, "INBOX", 5) == 0 && (name[5] == '\0' || name[5] == '/'))
		fold = 5;
	if (m->words > 8) {
		heap = xcalloc(2 * m->words, sizeof(uint64_t));
		cur = heap;
		next = heap + m->words;
	}
	memset(cur, 0, m->words * sizeof(uint64_t));
	cur[0] = 1;
	close_wild(m, cur);
	for (size_t i = 0; i < nlen; i++) {
		uint8_t c = (uint8_t)name[i];
		const uint64_t *l1 = lit_set(m, c);
		const uint64_t *l2 = i < fold ? lit_set(m, ascii_other_case(c)) : NULL;
		uint64_t carry = 0, any = 0;

		for (size_t w = 0; w < m->words; w++) {
			uint64_t lit = (l1 ? l1[w] : 0) | (l2 ? l2[w] : 0);
			uint64_t adv = cur[w] & lit;
			uint64_t stay = cur[w] & (m->star[w] | (c != '/' ? m->pct[w] : 0));

			next[w] = (adv << 1) | carry | stay;
			carry = adv >> (WBITS - 1);
			any |= next[w];
		}
		if (any == 0) {
			ok = false;
			goto out;
		}
		close_wild(m, next);
		uint64_t *tmp = cur;
		cur = next;
		next = tmp;
	}
	ok = (cur[m->k / WBITS] >> (m->k % WBITS)) & 1;
out:
	free(heap);
	return ok;
}
