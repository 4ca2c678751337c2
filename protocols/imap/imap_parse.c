/*
 * IMAP syntax: the framer (loop side: one complete command = line plus its
 * literals), the argument parser (worker side, over a framed command),
 * sequence sets, modified UTF-7 and the date formats.
 *
 * Bounds: a line segment and a non-APPEND command are bounded by the
 * connection's line limit (8 KiB before login, 64 KiB after); an APPEND
 * literal by imap_max_literal and the whole APPEND by that plus a line.
 * A refused command is still consumed to its end (its non-synchronizing
 * literals included), so the stream never loses sync.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "roost/error.h"
#include "roost/log.h"
#include "roost/xalloc.h"

#include "imap_impl.h"

/* ------------------------------------------------------------------ */
/* Arena                                                               */

struct arena_chunk {
	struct arena_chunk *next;
	size_t used, size;
	_Alignas(16) uint8_t data[];
};

#define ARENA_CHUNK 8192

void
arena_init(struct arena *a)
{
	a->head = NULL;
	a->used = 0;
	a->max = 0;
}

void *
arena_alloc(struct arena *a, size_t n)
{
	struct arena_chunk *ch = a->head;
	size_t need = (n + 15) & ~(size_t)15;

	if (need < n)
		abort();
	if (ch == NULL || ch->size - ch->used < need) {
		size_t size = need > ARENA_CHUNK ? need : ARENA_CHUNK;

		ch = xmalloc(sizeof(*ch) + size);
		ch->used = 0;
		ch->size = size;
		ch->next = a->head;
		a->head = ch;
	}
	void *p = ch->data + ch->used;
	ch->used += need;
	a->used += need;
	memset(p, 0, n);
	return p;
}

void *
arena_try_alloc(struct arena *a, size_t n)
{
	if (a->max != 0 && (n > a->max || a->used > a->max - n))
		return NULL;
	return arena_alloc(a, n);
}

char *
arena_strndup(struct arena *a, const void *p, size_t n)
{
	char *s = arena_alloc(a, n + 1);

	memcpy(s, p, n);
	s[n] = '\0';
	return s;
}

void
arena_free(struct arena *a)
{
	struct arena_chunk *ch = a->head;

	while (ch != NULL) {
		struct arena_chunk *next = ch->next;
		free(ch);
		ch = next;
	}
	a->head = NULL;
	a->used = 0;
}

/* ------------------------------------------------------------------ */
/* Framer                                                              */

struct imap_spool_lit {
	size_t at; /* offset in text where the literal's bytes would be */
	uint64_t len;
	int fd;
};

struct imap_spool {
	struct buf text; /* the command, its spooled literals left out */
	struct imap_spool_lit lits[IMAP_MAX_SPOOL_FILES];
	size_t n_lits;
	uint64_t total;    /* bytes of the command so far, literals included */
	uint64_t lit_left; /* bytes of the current literal still to come */
	int lit_fd;        /* where they go: a file, or -1 for text */
};

void
imap_spool_free(struct imap_spool **spp)
{
	struct imap_spool *sp = *spp;

	if (sp == NULL)
		return;
	for (size_t i = 0; i < sp->n_lits; i++)
		close(sp->lits[i].fd);
	buf_free(&sp->text);
	free(sp);
	*spp = NULL;
}

void
imap_framer_init(struct imap_framer *fr)
{
	memset(fr, 0, sizeof(*fr));
}

void
imap_framer_reset(struct imap_framer *fr)
{
	imap_spool_free(&fr->sp);
	imap_spool_free(&fr->ready);
	memset(fr, 0, sizeof(*fr));
}

struct imap_spool *
imap_framer_take_spool(struct imap_framer *fr)
{
	struct imap_spool *sp = fr->ready;

	fr->ready = NULL;
	return sp;
}

/* Between two commands: forget the last one, keep the spool handed over
 * with it until it is taken. */
static void
framer_clear(struct imap_framer *fr)
{
	struct imap_spool *ready = fr->ready;

	imap_spool_free(&fr->sp);
	memset(fr, 0, sizeof(*fr));
	fr->ready = ready;
}

/* The longest literal marker worth reading: "{" digits "+}\r". */
#define MARKER_MAX (IMAP_MAX_LITERAL_DIGITS + 4)

/* If the line in[start..lf] (lf at '\n') ends with {n} or {n+}, return true
 * with the size and whether it is synchronizing. */
static bool
literal_marker(const uint8_t *in, size_t start, size_t lf, uint64_t *n_r, bool *sync_r,
               bool *overflow_r)
{
	size_t e = lf;

	*overflow_r = false;
	if (e > start && in[e - 1] == '\r')
		e--;
	if (e <= start || in[e - 1] != '}')
		return false;
	e--;
	*sync_r = true;
	if (e > start && in[e - 1] == '+') {
		*sync_r = false;
		e--;
	}
	size_t d = e;
	while (d > start && in[d - 1] >= '0' && in[d - 1] <= '9')
		d--;
	if (d == e || d == start || in[d - 1] != '{')
		return false;
	if (e - d > IMAP_MAX_LITERAL_DIGITS) {
		*overflow_r = true;
		*n_r = UINT64_MAX;
		return true;
	}
	uint64_t v = 0;
	for (size_t i = d; i < e; i++)
		v = v * 10 + (uint64_t)(in[i] - '0');
	*n_r = v;
	return true;
}

/* Tag and command name of the first line, for replies and the APPEND
 * bound. */
static void
learn_kind(struct imap_framer *fr, const uint8_t *in, size_t lf)
{
	size_t i = 0, t = 0;

	while (i < lf && in[i] != ' ' && in[i] != '\r' && t < IMAP_MAX_TAG)
		fr->tag[t++] = (char)in[i++];
	fr->tag[t] = '\0';
	if (i < lf && in[i] != ' ') { /* tag too long */
		strcpy(fr->tag, "*");
		while (i < lf && in[i] != ' ')
			i++;
	}
	if (t == 0)
		strcpy(fr->tag, "*");
	if (i < lf)
		i++;
	size_t ns = i;
	while (i < lf && in[i] != ' ' && in[i] != '\r')
		i++;
	if (i - ns == 3 && strncasecmp((const char *)in + ns, "UID", 3) == 0 && i < lf) {
		ns = ++i;
		while (i < lf && in[i] != ' ' && in[i] != '\r')
			i++;
	}
	fr->is_append = i - ns == 6 && strncasecmp((const char *)in + ns, "APPEND", 6) == 0;
	fr->kind_known = true;
}

/* Bytes of the whole command, literals included: the line bound, but an
 * APPEND after login may carry max_literal more. The input buffer is held
 * to this, so past it the command is refused, never left to overflow. */
static uint64_t
command_max(const struct imap_framer *fr, const struct imap_frame_env *env)
{
	if (fr->is_append && env->authenticated && env->mode == FRAMER_COMMAND)
		return env->max_literal + env->max_line;
	return env->max_line;
}

static void
refuse(struct imap_framer *fr, struct imap_frame_env *env, const char *status, const char *text)
{
	char line[IMAP_MAX_TAG + 128];

	snprintf(line, sizeof(line), "%s %s %s\r\n", fr->tag[0] ? fr->tag : "*", status, text);
	env->write(env->arg, line);
	env->bad++;
	fr->skipping = true;
	fr->skip_lit = 0;
}

/* ---- spooling (see imap_impl.h) ---- */

static uint64_t
spool_at(const struct imap_frame_env *env)
{
	return env->spool_at != 0 ? env->spool_at : IMAP_SPOOL_AT;
}

/* An unlinked file under dir, or -1. */
static int
spool_open(const char *dir)
{
	char path[4096];
	int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);

	if (fd >= 0)
		return fd;
	/* file systems without O_TMPFILE */
	if ((size_t)snprintf(path, sizeof(path), "%s/.imap-spool-XXXXXX", dir) >= sizeof(path))
		return -1;
	fd = mkostemp(path, O_CLOEXEC);
	if (fd >= 0)
		unlink(path);
	return fd;
}

/* Refuse the command being spooled. at: where the skipping resumes in the
 * input; skip: literal bytes to drop from there first. */
static void
spool_refuse(struct imap_framer *fr, struct imap_frame_env *env, const char *status,
             const char *text, size_t at, uint64_t skip)
{
	imap_spool_free(&fr->sp);
	fr->held = false;
	refuse(fr, env, status, text);
	fr->skip_lit = skip;
	fr->pos = fr->line_start = at;
}

/*
 * The bytes in[0..upto) are in the spool now. Let the loop drop all but
 * the last one: a partial command stays in the input buffer, so the loop
 * goes on timing it as one (command timeout, not idle timeout).
 */
static enum imap_frame_res
hold(struct imap_framer *fr, size_t upto, size_t *used_r)
{
	if (upto == 0 || (upto == 1 && fr->held))
		return IMAP_FRAME_AGAIN;
	fr->held = true;
	if (upto == 1)
		return IMAP_FRAME_AGAIN;
	*used_r = upto - 1;
	fr->pos = fr->pos > upto - 1 ? fr->pos - (upto - 1) : 1;
	return IMAP_FRAME_DISCARD;
}

/* A literal of n bytes follows the spool's text: in the text while that
 * stays within spool_at, else in a file of its own. false once refused (seg: where
 * its line began in the input). */
static bool
spool_literal(struct imap_framer *fr, struct imap_frame_env *env, uint64_t n, size_t seg)
{
	struct imap_spool *sp = fr->sp;

	if (n == 0 || sp->text.len + n <= spool_at(env)) {
		sp->lit_fd = -1;
	} else if (sp->n_lits == IMAP_MAX_SPOOL_FILES) {
		spool_refuse(fr, env, "NO", "[LIMIT] Too many large messages in one APPEND", seg,
		             0);
		return false;
	} else {
		int fd = spool_open(env->spool_dir);

		if (fd < 0) {
			log_error("imap: event=spool-failed dir=\"%s\" error=\"%s\"",
			          env->spool_dir, strerror(errno));
			spool_refuse(fr, env, "NO",
			             "[UNAVAILABLE] Cannot take the message now, "
			             "try again later",
			             seg, 0);
			return false;
		}
		sp->lits[sp->n_lits].at = sp->text.len;
		sp->lits[sp->n_lits].len = n;
		sp->lits[sp->n_lits].fd = fd;
		sp->n_lits++;
		sp->lit_fd = fd;
	}
	sp->lit_left = n;
	sp->total += n;
	return true;
}

/* Start spooling an APPEND: in[0..upto) is its text so far, ending with
 * the marker of an n-byte literal. */
static bool
spool_begin(struct imap_framer *fr, struct imap_frame_env *env, const uint8_t *in, size_t upto,
            uint64_t n)
{
	struct imap_spool *sp = xcalloc(1, sizeof(*sp));

	buf_init(&sp->text, 0);
	buf_append(&sp->text, in, upto);
	sp->total = upto;
	sp->lit_fd = -1;
	fr->sp = sp;
	return spool_literal(fr, env, n, fr->line_start);
}

static int
spool_write(struct imap_spool *sp, const uint8_t *p, size_t n)
{
	if (sp->lit_fd < 0)
		return buf_append(&sp->text, p, n);
	while (n > 0) {
		ssize_t w = write(sp->lit_fd, p, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return ROOST_EIO;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/*
 * One step of a spooled command: literal bytes go to their file (or the
 * text), line segments to the text. in[0] is already spooled when
 * fr->held. true with *res set; false after refusing the command (the
 * caller skips the rest of it).
 */
static bool
spool_step(struct imap_framer *fr, struct imap_frame_env *env, const uint8_t *in, size_t len,
           size_t *used_r, enum imap_frame_res *res)
{
	size_t off = fr->held ? 1 : 0;

	for (;;) {
		struct imap_spool *sp = fr->sp;

		if (sp->lit_left > 0) {
			size_t take = len - off;

			if (take > sp->lit_left)
				take = (size_t)sp->lit_left;
			if (take > 0 && spool_write(sp, in + off, take) < 0) {
				log_error("imap: event=spool-failed dir=\"%s\" error=\"%s\"",
				          env->spool_dir, strerror(errno));
				spool_refuse(fr, env, "NO",
				             "[UNAVAILABLE] Cannot take the message "
				             "now, try again later",
				             off + take, sp->lit_left - take);
				return false;
			}
			off += take;
			sp->lit_left -= take;
			if (sp->lit_left > 0) {
				*res = hold(fr, off, used_r);
				return true;
			}
			fr->pos = off;
		}

		/* a line segment from off: the rest of the APPEND line */
		size_t seg = off;
		if (fr->pos < seg)
			fr->pos = seg;
		const uint8_t *lf = memchr(in + fr->pos, '\n', len - fr->pos);
		if (lf == NULL) {
			/* leave room for the held byte in the input bound */
			if (len - seg >= env->max_line) {
				spool_refuse(fr, env, "BAD", "[TOOBIG] Command line too long", seg,
				             0);
				return false;
			}
			fr->pos = len;
			*res = hold(fr, seg, used_r);
			return true;
		}
		size_t i = (size_t)(lf - in);
		size_t seglen = i + 1 - seg;
		uint64_t n;
		bool sync, ovf;
		bool lit = literal_marker(in, seg, i, &n, &sync, &ovf);
		if (i - seg > env->max_line ||
		    sp->text.len + seglen > spool_at(env) + 2 * env->max_line) {
			spool_refuse(fr, env, "BAD", "[TOOBIG] Command line too long", seg, 0);
			return false;
		}
		if (lit && (ovf || n > env->max_literal ||
		            sp->total + seglen + n > env->max_literal + env->max_line)) {
			if (ovf) {
				imap_spool_free(&fr->sp);
				refuse(fr, env, sync ? "NO" : "BAD", "[TOOBIG] Literal too big");
				*used_r = i + 1;
				framer_clear(fr);
				*res = IMAP_FRAME_DISCARD;
				return true;
			}
			spool_refuse(fr, env, sync ? "NO" : "BAD", "[TOOBIG] Literal too big", seg,
			             0);
			return false;
		}
		buf_append(&sp->text, in + seg, seglen);
		sp->total += seglen;
		if (!lit) {
			/* complete: the command runs from the spool */
			imap_spool_free(&fr->ready);
			fr->ready = sp;
			fr->sp = NULL;
			*used_r = i + 1;
			framer_clear(fr);
			*res = IMAP_FRAME_COMMAND;
			return true;
		}
		if (!spool_literal(fr, env, n, seg))
			return false;
		if (sync)
			env->write(env->arg, "+ Ready for literal data\r\n");
		off = i + 1;
	}
}

enum imap_frame_res
imap_framer_run(struct imap_framer *fr, struct imap_frame_env *env, const uint8_t *in, size_t len,
                size_t *used_r)
{
	for (;;) {
		if (fr->skipping) {
			if (fr->skip_lit > 0) {
				size_t have = len - fr->pos;
				size_t take = fr->skip_lit < have ? (size_t)fr->skip_lit : have;

				fr->pos += take;
				fr->skip_lit -= take;
				if (fr->skip_lit > 0) {
					if (fr->pos == 0)
						return IMAP_FRAME_AGAIN;
					*used_r = fr->pos;
					fr->pos = fr->line_start = 0;
					return IMAP_FRAME_DISCARD;
				}
				fr->line_start = fr->pos;
			}
			const uint8_t *lf = memchr(in + fr->pos, '\n', len - fr->pos);
			if (lf == NULL) {
				/* Keep what could be the start of a literal marker
				 * ("{n+}\r") ending this line: dropped, the literal
				 * would be taken for the next command. */
				size_t keep = len - fr->line_start;

				if (keep > MARKER_MAX)
					keep = MARKER_MAX;
				if (len - keep == 0) {
					fr->pos = len;
					return IMAP_FRAME_AGAIN;
				}
				*used_r = len - keep;
				fr->line_start = 0;
				fr->pos = keep;
				return IMAP_FRAME_DISCARD;
			}
			size_t i = (size_t)(lf - in);
			uint64_t n;
			bool sync, ovf;
			if (env->mode == FRAMER_COMMAND &&
			    literal_marker(in, fr->line_start, i, &n, &sync, &ovf) && !sync &&
			    !ovf) {
				/* A non-synchronizing literal follows: drop it too. */
				fr->skip_lit = n;
				fr->pos = fr->line_start = i + 1;
				continue;
			}
			/* End of the refused command (a synchronizing literal
			 * is never sent: the client got our tagged reply). */
			*used_r = i + 1;
			framer_clear(fr);
			return IMAP_FRAME_DISCARD;
		}

		if (fr->sp != NULL) {
			enum imap_frame_res res;

			if (spool_step(fr, env, in, len, used_r, &res))
				return res;
			continue; /* refused: skip the rest of it */
		}

		if (fr->in_literal) {
			if (len < fr->lit_end)
				return IMAP_FRAME_AGAIN;
			fr->in_literal = false;
			fr->pos = fr->line_start = fr->lit_end;
		}

		const uint8_t *lf = memchr(in + fr->pos, '\n', len - fr->pos);
		if (lf == NULL) {
			if (len - fr->line_start > env->max_line ||
			    (fr->kind_known && len > command_max(fr, env))) {
				if (!fr->kind_known)
					learn_kind(fr, in, len);
				refuse(fr, env, "BAD", "[TOOBIG] Command line too long");
				fr->pos = fr->line_start;
				continue;
			}
			fr->pos = len;
			return IMAP_FRAME_AGAIN;
		}
		size_t i = (size_t)(lf - in);
		if (!fr->kind_known)
			learn_kind(fr, in, i);
		if (i - fr->line_start > env->max_line || i + 1 > command_max(fr, env)) {
			refuse(fr, env, "BAD", "[TOOBIG] Command line too long");
			fr->pos = fr->line_start;
			continue;
		}
		if (env->mode == FRAMER_LINE) {
			*used_r = i + 1;
			framer_clear(fr);
			return IMAP_FRAME_COMMAND;
		}
		uint64_t n;
		bool sync, ovf;
		if (!literal_marker(in, fr->line_start, i, &n, &sync, &ovf)) {
			*used_r = i + 1;
			framer_clear(fr);
			return IMAP_FRAME_COMMAND;
		}
		bool append = fr->is_append && env->authenticated;
		uint64_t total_max = append ? env->max_literal + env->max_line : env->max_line;
		uint64_t lit_max = append ? env->max_literal : env->max_line;
		if (ovf || n > lit_max || n > total_max - (i + 1) || i + 1 > total_max) {
			if (sync)
				refuse(fr, env, "NO", "[TOOBIG] Literal too big");
			else
				refuse(fr, env, "BAD", "[TOOBIG] Literal too big");
			if (ovf) {
				/* Cannot tell where it ends: drop the line only. */
				*used_r = i + 1;
				framer_clear(fr);
				return IMAP_FRAME_DISCARD;
			}
			fr->pos = fr->line_start;
			continue;
		}
		if (append && env->spool_dir != NULL && (uint64_t)(i + 1) + n > spool_at(env)) {
			if (!spool_begin(fr, env, in, i + 1, n)) {
				fr->pos = fr->line_start;
				continue;
			}
			if (sync)
				env->write(env->arg, "+ Ready for literal data\r\n");
			return hold(fr, i + 1, used_r);
		}
		fr->in_literal = true;
		fr->lit_end = i + 1 + (size_t)n;
		fr->pos = fr->line_start = i + 1;
		/* The input must hold the command so far and a line after it. */
		if (append && env->raise_input != NULL)
			env->raise_input(env->arg, fr->lit_end + env->max_line);
		if (sync)
			env->write(env->arg, "+ Ready for literal data\r\n");
	}
}

/* ------------------------------------------------------------------ */
/* Arguments                                                           */

struct pstate {
	struct arena *a;
	const uint8_t *base, *p, *end;
	size_t count;
	const char *err;
	int rc;
	const struct imap_spool *sp; /* spooled literals, by offset from base */
	size_t next_lit;
	bool raw_literals; /* APPEND: message literals are not copied */
	size_t top_idx;    /* index of the top-level argument being parsed */
};

static const char empty_string[] = "";

/* Arena memory for what the client sized, within the command's budget. */
static void *
palloc(struct pstate *ps, size_t n)
{
	void *p = arena_try_alloc(ps->a, n);

	if (p == NULL && ps->err == NULL) {
		ps->rc = ROOST_ETOOBIG;
		ps->err = "[TOOBIG] Command too large to process";
	}
	return p;
}

static char *
pstrndup(struct pstate *ps, const void *src, size_t n)
{
	char *s;

	if (n == 0)
		return (char *)empty_string;
	if (n == SIZE_MAX || (s = palloc(ps, n + 1)) == NULL)
		return NULL;
	memcpy(s, src, n);
	s[n] = '\0';
	return s;
}

static bool
is_atom_char(uint8_t c)
{
	if (c <= 0x20 || c >= 0x7f)
		return false;
	switch (c) {
	case '(':
	case ')':
	case '{':
	case '"':
	case '\\':
	case '%':
	case '*':
	case ']':
		return false;
	default:
		return true;
	}
}

/* Atom as the command arguments use it: astring chars plus list wildcards
 * and ']' (resp-specials), with "[...]" sections (FETCH BODY[HEADER.FIELDS
 * (A B)]) kept whole. */
static bool
is_arg_atom_char(uint8_t c)
{
	return is_atom_char(c) || c == '%' || c == '*' || c == ']' || c == '\\';
}

static int
perr(struct pstate *ps, const char *why)
{
	if (ps->err == NULL) {
		ps->err = why;
		ps->rc = ROOST_EINVAL;
	}
	return -1;
}

static bool
at_eol(const struct pstate *ps)
{
	return ps->p >= ps->end || *ps->p == '\r' || *ps->p == '\n';
}

static int parse_list_items(struct pstate *ps, struct imap_arg **items_r, size_t *n_r,
                            unsigned depth, bool top);

static int
parse_one(struct pstate *ps, struct imap_arg *arg, unsigned depth)
{
	const uint8_t *p = ps->p;

	arg->fd = -1;
	if (++ps->count > IMAP_MAX_ARGS) {
		ps->rc = ROOST_ETOOBIG;
		ps->err = "[TOOBIG] Too many arguments";
		return -1;
	}
	if (*p == '(') {
		if (depth >= IMAP_MAX_DEPTH) {
			ps->rc = ROOST_ETOOBIG;
			ps->err = "[TOOBIG] Nesting too deep";
			return -1;
		}
		ps->p++;
		arg->type = ARG_LIST;
		if (parse_list_items(ps, &arg->list, &arg->n, depth + 1, false) < 0)
			return -1;
		if (ps->p >= ps->end || *ps->p != ')')
			return perr(ps, "Missing ')'");
		ps->p++;
		return 0;
	}
	if (*p == '"') {
		const uint8_t *q = p + 1;
		size_t n = 0;

		/* Measure first: the copy takes the string's own length. */
		for (;;) {
			if (q >= ps->end || *q == '\r' || *q == '\n')
				return perr(ps, "Unterminated quoted string");
			if (*q == '"')
				break;
			if (*q == '\\') {
				q++;
				if (q >= ps->end || (*q != '"' && *q != '\\'))
					return perr(ps, "Invalid escape in quoted string");
			}
			if (*q == '\0')
				return perr(ps, "NUL in quoted string");
			q++;
			n++;
		}
		char *out = n == 0 ? (char *)empty_string : palloc(ps, n + 1);
		if (out == NULL)
			return -1;
		if (n > 0) {
			size_t o = 0;

			for (p++; *p != '"'; p++) {
				if (*p == '\\')
					p++;
				out[o++] = (char)*p;
			}
			out[o] = '\0';
		}
		ps->p = q + 1;
		arg->type = ARG_QUOTED;
		arg->str = out;
		arg->len = n;
		arg->raw = (const uint8_t *)out;
		return 0;
	}
	if (*p == '{' || (*p == '~' && p + 1 < ps->end && p[1] == '{')) {
		uint64_t n = 0;
		size_t digits = 0;

		if (*p == '~')
			p++;
		p++;
		while (p < ps->end && *p >= '0' && *p <= '9') {
			if (++digits > IMAP_MAX_LITERAL_DIGITS)
				return perr(ps, "Literal size too long");
			n = n * 10 + (uint64_t)(*p++ - '0');
		}
		if (digits == 0)
			return perr(ps, "Invalid literal");
		if (p < ps->end && *p == '+')
			p++;
		if (p >= ps->end || *p != '}')
			return perr(ps, "Invalid literal");
		p++;
		if (p < ps->end && *p == '\r')
			p++;
		if (p >= ps->end || *p != '\n')
			return perr(ps, "Literal must end the line");
		p++;
		arg->type = ARG_LITERAL;
		if (ps->sp != NULL && ps->next_lit < ps->sp->n_lits &&
		    ps->sp->lits[ps->next_lit].at == (size_t)(p - ps->base)) {
			/* its bytes are in a file, not in the text */
			const struct imap_spool_lit *l = &ps->sp->lits[ps->next_lit++];

			if (l->len != n)
				return perr(ps, "Literal truncated");
			arg->len = (size_t)n;
			arg->fd = l->fd;
			ps->p = p;
			return 0;
		}
		if ((uint64_t)(ps->end - p) < n)
			return perr(ps, "Literal truncated");
		arg->raw = p;
		arg->len = (size_t)n;
		if (!(ps->raw_literals && depth == 0 && ps->top_idx > 0) &&
		    memchr(p, '\0', (size_t)n) == NULL) {
			arg->str = pstrndup(ps, p, (size_t)n);
			if (arg->str == NULL)
				return -1;
		}
		ps->p = p + n;
		return 0;
	}
	/* atom */
	const uint8_t *s = p;
	while (p < ps->end) {
		if (*p == '[') {
			const uint8_t *q = p + 1;
			/* printable ASCII only: a NUL here would cut the string
			 * short of its length (and a mailbox name with it) */
			while (q < ps->end && *q != ']' && *q >= 0x20 && *q < 0x7f)
				q++;
			if (q < ps->end && *q == ']') {
				p = q + 1;
				continue;
			}
			p++;
			continue;
		}
		if (!is_arg_atom_char(*p))
			break;
		p++;
	}
	if (p == s) {
		if (*p >= 0x80)
			return perr(ps, "8-bit characters need a quoted string or literal");
		return perr(ps, "Unexpected character");
	}
	arg->type = ARG_ATOM;
	arg->len = (size_t)(p - s);
	arg->str = pstrndup(ps, s, arg->len);
	if (arg->str == NULL)
		return -1;
	arg->raw = (const uint8_t *)arg->str;
	if (arg->len == 3 && strcasecmp(arg->str, "NIL") == 0)
		arg->type = ARG_NIL;
	ps->p = p;
	return 0;
}

/* The items grow in a heap array of their own and are copied to the
 * arena once complete, so the arena holds each list once, at its size. */
static int
parse_list_items(struct pstate *ps, struct imap_arg **items_r, size_t *n_r, unsigned depth,
                 bool top)
{
	size_t n = 0, cap = 0;
	struct imap_arg *items = NULL;
	int rc = -1;

	for (;;) {
		if (top) {
			if (at_eol(ps))
				break;
		} else {
			if (ps->p >= ps->end || *ps->p == '\r' || *ps->p == '\n') {
				perr(ps, "Missing ')'");
				goto out;
			}
			if (*ps->p == ')')
				break;
		}
		if (n > 0) {
			if (*ps->p != ' ') {
				perr(ps, "Missing space between arguments");
				goto out;
			}
			ps->p++;
			if (!top && ps->p < ps->end && *ps->p == ')') {
				perr(ps, "Space before ')'");
				goto out;
			}
			if (at_eol(ps)) {
				perr(ps, "Trailing space");
				goto out;
			}
		}
		if (n == cap) {
			size_t ncap = cap ? cap * 2 : 8;

			/* the growing array counts against the budget too */
			if (ps->a->max != 0 && (ps->a->used > ps->a->max ||
			                        ncap * sizeof(*items) > ps->a->max - ps->a->used)) {
				palloc(ps, ncap * sizeof(*items));
				goto out;
			}
			items = xreallocarray(items, ncap, sizeof(*items));
			cap = ncap;
		}
		memset(&items[n], 0, sizeof(items[n]));
		if (top)
			ps->top_idx = n;
		if (parse_one(ps, &items[n], depth) < 0)
			goto out;
		n++;
	}
	*items_r = NULL;
	if (n > 0) {
		*items_r = palloc(ps, n * sizeof(*items));
		if (*items_r == NULL)
			goto out;
		memcpy(*items_r, items, n * sizeof(*items));
	}
	*n_r = n;
	rc = 0;
out:
	free(items);
	return rc;
}

static bool
is_tag_char(uint8_t c)
{
	return is_atom_char(c) && c != '+';
}

static int
parse_text(struct arena *a, const uint8_t *data, size_t len, const struct imap_spool *sp,
           struct imap_parsed *p, const char **err_r)
{
	struct pstate ps = {.a = a, .base = data, .p = data, .end = data + len, .sp = sp};
	const uint8_t *q = data;

	memset(p, 0, sizeof(*p));
	*err_r = NULL;
	while (q < ps.end && is_tag_char(*q))
		q++;
	if (q == data || q - data > IMAP_MAX_TAG || q >= ps.end || *q != ' ') {
		*err_r = "Invalid tag";
		if (q > data && q - data <= IMAP_MAX_TAG &&
		    (q >= ps.end || *q == '\r' || *q == '\n'))
			p->tag = pstrndup(&ps, data, (size_t)(q - data));
		if (p->tag != NULL)
			*err_r = "Missing command";
		return ROOST_EINVAL;
	}
	p->tag = pstrndup(&ps, data, (size_t)(q - data));
	ps.p = ++q;
	while (q < ps.end && is_atom_char(*q))
		q++;
	if (q == ps.p) {
		*err_r = "Missing command";
		return ROOST_EINVAL;
	}
	char *name = pstrndup(&ps, ps.p, (size_t)(q - ps.p));
	if (p->tag == NULL || name == NULL) {
		*err_r = ps.err;
		return ps.rc;
	}
	for (char *c = name; *c; c++)
		*c = (char)toupper((unsigned char)*c);
	ps.p = q;
	if (strcmp(name, "UID") == 0) {
		if (ps.p >= ps.end || *ps.p != ' ') {
			*err_r = "Missing command after UID";
			return ROOST_EINVAL;
		}
		q = ++ps.p;
		while (q < ps.end && is_atom_char(*q))
			q++;
		if (q == ps.p) {
			*err_r = "Missing command after UID";
			return ROOST_EINVAL;
		}
		name = pstrndup(&ps, ps.p, (size_t)(q - ps.p));
		if (name == NULL) {
			*err_r = ps.err;
			return ps.rc;
		}
		for (char *c = name; *c; c++)
			*c = (char)toupper((unsigned char)*c);
		ps.p = q;
		p->uid = true;
	}
	p->name = name;
	ps.raw_literals = strcmp(name, "APPEND") == 0;
	if (!at_eol(&ps)) {
		if (*ps.p != ' ') {
			*err_r = "Unexpected character after command";
			return ROOST_EINVAL;
		}
		ps.p++;
		if (at_eol(&ps)) {
			*err_r = "Trailing space";
			return ROOST_EINVAL;
		}
	}
	if (parse_list_items(&ps, &p->args, &p->n, 0, true) < 0) {
		*err_r = ps.err;
		return ps.rc;
	}
	/* the line end: CRLF (or a bare LF) and nothing after */
	if (ps.p < ps.end && *ps.p == '\r')
		ps.p++;
	if (ps.p < ps.end && *ps.p == '\n')
		ps.p++;
	if (ps.p != ps.end) {
		*err_r = "Garbage after command";
		return ROOST_EINVAL;
	}
	return 0;
}

int
imap_parse_command(struct arena *a, const uint8_t *data, size_t len, struct imap_parsed *p,
                   const char **err_r)
{
	return parse_text(a, data, len, NULL, p, err_r);
}

int
imap_parse_spooled(struct arena *a, const struct imap_spool *sp, struct imap_parsed *p,
                   const char **err_r)
{
	return parse_text(a, sp->text.data, sp->text.len, sp, p, err_r);
}

bool
imap_arg_is_string(const struct imap_arg *a)
{
	return (a->type == ARG_ATOM || a->type == ARG_QUOTED || a->type == ARG_LITERAL) &&
	       a->str != NULL;
}

bool
imap_arg_is_astring(const struct imap_arg *a)
{
	return imap_arg_is_string(a) || (a->type == ARG_NIL);
}

bool
imap_arg_atom_eq(const struct imap_arg *a, const char *word)
{
	return (a->type == ARG_ATOM || a->type == ARG_NIL) && strcasecmp(a->str, word) == 0;
}

/* ------------------------------------------------------------------ */
/* Sequence sets                                                       */

static int
seq_number(const char **pp, uint32_t *v_r)
{
	const char *p = *pp;
	uint64_t v = 0;

	if (*p == '*') {
		*v_r = SEQ_STAR;
		*pp = p + 1;
		return 0;
	}
	if (*p < '1' || *p > '9')
		return ROOST_EINVAL;
	while (*p >= '0' && *p <= '9') {
		v = v * 10 + (uint64_t)(*p - '0');
		if (v >= UINT32_MAX)
			return ROOST_EINVAL;
		p++;
	}
	*v_r = (uint32_t)v;
	*pp = p;
	return 0;
}

int
seqset_parse(struct arena *a, const char *text, struct seqset *set_r)
{
	size_t n = 1;

	for (const char *p = text; *p; p++)
		if (*p == ',')
			n++;
	set_r->r = arena_alloc(a, n * sizeof(*set_r->r));
	set_r->n = 0;
	const char *p = text;
	for (;;) {
		uint32_t lo, hi;

		if (seq_number(&p, &lo) < 0)
			return ROOST_EINVAL;
		hi = lo;
		if (*p == ':') {
			p++;
			if (seq_number(&p, &hi) < 0)
				return ROOST_EINVAL;
		}
		set_r->r[set_r->n].lo = lo;
		set_r->r[set_r->n].hi = hi;
		set_r->n++;
		if (*p == '\0')
			return 0;
		if (*p != ',')
			return ROOST_EINVAL;
		p++;
	}
}

static int
range_cmp(const void *a, const void *b)
{
	const struct seq_range *x = a, *y = b;

	return x->lo < y->lo ? -1 : x->lo > y->lo;
}

void
seqset_resolve(struct seqset *set, uint32_t star)
{
	for (size_t i = 0; i < set->n; i++) {
		struct seq_range *r = &set->r[i];
		if (r->lo == SEQ_STAR)
			r->lo = star;
		if (r->hi == SEQ_STAR)
			r->hi = star;
		if (r->lo > r->hi) {
			uint32_t t = r->lo;
			r->lo = r->hi;
			r->hi = t;
		}
	}
	qsort(set->r, set->n, sizeof(*set->r), range_cmp);
	size_t o = 0;
	for (size_t i = 0; i < set->n; i++) {
		if (o > 0 && (uint64_t)set->r[i].lo <= (uint64_t)set->r[o - 1].hi + 1) {
			if (set->r[i].hi > set->r[o - 1].hi)
				set->r[o - 1].hi = set->r[i].hi;
		} else {
			set->r[o++] = set->r[i];
		}
	}
	set->n = o;
}

bool
seqset_contains(const struct seqset *set, uint32_t v)
{
	size_t lo = 0, hi = set->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (v < set->r[mid].lo)
			hi = mid;
		else if (v > set->r[mid].hi)
			lo = mid + 1;
		else
			return true;
	}
	return false;
}

void
seqset_format(const uint32_t *vals, size_t n, struct buf *out)
{
	size_t i = 0;

	while (i < n) {
		size_t j = i;
		while (j + 1 < n && vals[j + 1] == vals[j] + 1)
			j++;
		if (i > 0)
			buf_append_byte(out, ',');
		if (j == i)
			buf_printf(out, "%u", vals[i]);
		else
			buf_printf(out, "%u:%u", vals[i], vals[j]);
		i = j + 1;
	}
}

/* ------------------------------------------------------------------ */
/* Dates                                                               */

static const char *const months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                     "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

static int
parse_dmy(const char **pp, int *y_r, int *m_r, int *d_r)
{
	const char *p = *pp;
	int d = 0, y = 0, m = -1, nd = 0;

	while (*p >= '0' && *p <= '9' && nd < 2) {
		d = d * 10 + (*p++ - '0');
		nd++;
	}
	if (nd == 0 || *p++ != '-')
		return ROOST_EINVAL;
	for (int i = 0; i < 12; i++) {
		if (strncasecmp(p, months[i], 3) == 0) {
			m = i + 1;
			break;
		}
	}
	if (m < 0)
		return ROOST_EINVAL;
	p += 3;
	if (*p++ != '-')
		return ROOST_EINVAL;
	for (int i = 0; i < 4; i++) {
		if (*p < '0' || *p > '9')
			return ROOST_EINVAL;
		y = y * 10 + (*p++ - '0');
	}
	if (d < 1 || d > 31)
		return ROOST_EINVAL;
	*y_r = y;
	*m_r = m;
	*d_r = d;
	*pp = p;
	return 0;
}

int
imap_parse_date(const char *s, int *y_r, int *m_r, int *d_r)
{
	const char *p = s;

	if (parse_dmy(&p, y_r, m_r, d_r) < 0 || *p != '\0')
		return ROOST_EINVAL;
	return 0;
}

static int64_t
days_from_civil(int y, int m, int d)
{
	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	int64_t yoe = y - era * 400;
	int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

int
imap_parse_datetime(const char *s, int64_t *t_r)
{
	const char *p = s;
	int y, m, d, hh, mm, ss, zs, zh;

	if (*p == ' ')
		p++;
	if (parse_dmy(&p, &y, &m, &d) < 0 || *p++ != ' ')
		return ROOST_EINVAL;
	if (sscanf(p, "%2d:%2d:%2d", &hh, &mm, &ss) != 3 || strlen(p) != 14)
		return ROOST_EINVAL;
	if (p[2] != ':' || p[5] != ':' || p[8] != ' ' || (p[9] != '+' && p[9] != '-'))
		return ROOST_EINVAL;
	for (int i = 10; i < 14; i++)
		if (p[i] < '0' || p[i] > '9')
			return ROOST_EINVAL;
	if (hh > 23 || mm > 59 || ss > 60)
		return ROOST_EINVAL;
	zs = p[9] == '-' ? -1 : 1;
	zh = (p[10] - '0') * 10 + (p[11] - '0');
	int zm = (p[12] - '0') * 10 + (p[13] - '0');
	int64_t t = days_from_civil(y, m, d) * 86400 + hh * 3600 + mm * 60 + ss;
	t -= zs * (zh * 3600 + zm * 60);
	*t_r = t;
	return 0;
}

void
imap_format_datetime(int64_t t, char out[32])
{
	time_t tt = (time_t)t;
	struct tm tm;

	gmtime_r(&tt, &tm);
	snprintf(out, 32, "%02d-%s-%04d %02d:%02d:%02d +0000", tm.tm_mday, months[tm.tm_mon],
	         tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}
