/*
 * The IMAP framer (loop side): one complete command = line plus its
 * literals, and the spooling of large APPEND literals to files.
 *
 * Bounds: a line segment and a non-APPEND command are bounded by the
 * connection's line limit (8 KiB before login, 64 KiB after); an APPEND
 * literal by imap_max_literal and the whole APPEND by that plus a line.
 * A refused command is still consumed to its end (its non-synchronizing
 * literals included), so the stream never loses sync.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "roost/error.h"
#include "roost/fdio.h"
#include "roost/log.h"
#include "roost/xalloc.h"

#include "imap_impl.h"

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
	/* REPLACE (RFC 8508) carries a message as APPEND does. */
	fr->is_append = (i - ns == 6 && strncasecmp((const char *)in + ns, "APPEND", 6) == 0) ||
	                (i - ns == 7 && strncasecmp((const char *)in + ns, "REPLACE", 7) == 0);
	fr->is_id = i - ns == 2 && strncasecmp((const char *)in + ns, "ID", 2) == 0;
	fr->kind_known = true;
}

/* The bound of one line segment: max_line, or IMAP_ID_MAX for an ID. */
static size_t
line_max(const struct imap_framer *fr, const struct imap_frame_env *env)
{
	if (fr->is_id && env->mode == FRAMER_COMMAND && env->max_line < IMAP_ID_MAX)
		return IMAP_ID_MAX;
	return env->max_line;
}

/* learn_kind() with what follows from the kind: an ID may fill more of
 * the input than the line bound. */
static void
learn_kind_env(struct imap_framer *fr, const struct imap_frame_env *env, const uint8_t *in,
               size_t lf)
{
	learn_kind(fr, in, lf);
	if (line_max(fr, env) > env->max_line && env->raise_input != NULL)
		env->raise_input(env->arg, line_max(fr, env) + env->max_line);
}

/* Bytes of the whole command, literals included: the line bound, but an
 * APPEND after login may carry max_literal more. The input buffer is held
 * to this, so past it the command is refused, never left to overflow. */
static uint64_t
command_max(const struct imap_framer *fr, const struct imap_frame_env *env)
{
	if (fr->is_append && env->authenticated && env->mode == FRAMER_COMMAND)
		return env->max_literal + env->max_line;
	return line_max(fr, env);
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

/* Under LITERAL- a non-synchronizing literal over the bound is refused
 * whatever the command; RFC 7888 asks for TOOBIG at least on APPEND. */
#define NONSYNC_TOO_BIG "[TOOBIG] Non-synchronizing literal over 4096 bytes (LITERAL-)"

static bool
nonsync_too_big(const struct imap_frame_env *env, uint64_t n, bool sync, bool ovf)
{
	return !sync && !ovf && env->nonsync_max != 0 && n > env->nonsync_max;
}

/* ---- spooling (see imap_impl.h) ---- */

static uint64_t
spool_at(const struct imap_frame_env *env)
{
	return env->spool_at != 0 ? env->spool_at : IMAP_SPOOL_AT;
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
		int fd = fdio_open_spool(env->spool_dir, ".imap-spool-");

		if (fd < 0) {
			log_error("event=imap_spool_failed dir=\"%s\" error=\"%s\"", env->spool_dir,
			          strerror(errno));
			spool_refuse(fr, env, "NO",
			             "[UNAVAILABLE] Cannot take the message now, "
			             "try again later",
			             seg, 0);
			return false;
		}
		sp->lits[sp->n_lits].at = sp->text.len;
		sp->lits[sp->n_lits].len = n;
		sp->lits[sp->n_lits].fd = fd;
		sp->lits[sp->n_lits].nul = false;
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
	/* The parser cannot look at a file's bytes: tell it of a NUL (only
	 * a literal8 may carry one). */
	if (memchr(p, '\0', n) != NULL)
		sp->lits[sp->n_lits - 1].nul = true;
	return fdio_write_all(sp->lit_fd, p, n);
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
				log_error("event=imap_spool_failed dir=\"%s\" error=\"%s\"",
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
		if (lit && nonsync_too_big(env, n, sync, ovf)) {
			spool_refuse(fr, env, "BAD", NONSYNC_TOO_BIG, seg, 0);
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
			if (!fr->kind_known && len - fr->line_start > env->max_line)
				learn_kind_env(fr, env, in, len);
			if (len - fr->line_start > line_max(fr, env) ||
			    (fr->kind_known && len > command_max(fr, env))) {
				refuse(fr, env, "BAD", "[TOOBIG] Command line too long");
				fr->pos = fr->line_start;
				continue;
			}
			fr->pos = len;
			return IMAP_FRAME_AGAIN;
		}
		size_t i = (size_t)(lf - in);
		if (!fr->kind_known)
			learn_kind_env(fr, env, in, i);
		if (i - fr->line_start > line_max(fr, env) || i + 1 > command_max(fr, env)) {
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
		if (nonsync_too_big(env, n, sync, ovf)) {
			/* skipping drops the literal: the stream stays in step */
			refuse(fr, env, "BAD", NONSYNC_TOO_BIG);
			fr->pos = fr->line_start;
			continue;
		}
		bool append = fr->is_append && env->authenticated;
		uint64_t total_max =
		    append ? env->max_literal + env->max_line : command_max(fr, env);
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
