#ifndef ROOST_IMAP_PARSE_H
#define ROOST_IMAP_PARSE_H

/*
 * Private to protocols/imap, the syntax layer under the session: the limits
 * of the grammar, the per-command arena (imap_arena.c), the framer that
 * finds one complete command on the loop (imap_framer.c), the argument
 * parser (imap_parse.c), sequence sets (imap_seqset.c), dates
 * (imap_date.c) and LIST patterns (imap_match.c). None of it knows the
 * session; imap_impl.h includes it for the command files.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "roost/buf.h"

/* ------------------------------------------------------------------ */
/* Limits (the configurable ones come from roost_config).              */

#define IMAP_MAX_TAG 64     /* bytes of a tag */
#define IMAP_MAX_DEPTH 32   /* parenthesis nesting */
#define IMAP_MAX_ARGS 32768 /* tokens in one command */
#define IMAP_MAX_LITERAL_DIGITS 19
#define IMAP_MAX_PATTERN 1024        /* bytes of one LIST/LSUB pattern (with the reference) */
#define IMAP_MAX_PATTERNS_TOTAL 8192 /* bytes of all patterns of one LIST */

/* ------------------------------------------------------------------ */
/* Per-command arena: everything a command allocates dies with it.     */

/* The parser may allocate this many bytes per byte of the line bound
 * (so 128 KiB for an 8 KiB line before login, 1 MiB for 64 KiB after). */
#define IMAP_ARENA_PER_LINE 16

struct arena_chunk;
struct arena {
	struct arena_chunk *head;
	size_t used; /* bytes handed out */
	size_t max;  /* arena_try_alloc() bound; 0 = none */
};

void arena_init(struct arena *a);
void *arena_alloc(struct arena *a, size_t n); /* zeroed, 16-aligned */
/* As arena_alloc(), or NULL when used + n would pass max: for sizes a
 * client chooses (the parser). */
void *arena_try_alloc(struct arena *a, size_t n);
char *arena_strndup(struct arena *a, const void *p, size_t n);
void arena_free(struct arena *a);

/* ------------------------------------------------------------------ */
/* Framer: finds one complete command (line plus literals) on the loop. */

/*
 * An APPEND whose literals would take the command past spool_at bytes is
 * not kept in the connection's input buffer: the framer moves the command
 * text it has seen into a spool and writes each large literal, as its bytes
 * arrive, to an unlinked file of its own under spool_dir, telling the loop
 * to discard what it wrote (FRAME_DISCARD). The command then runs from the
 * spool: imap_framer_take_spool() and imap_parse_spooled().
 */
#define IMAP_SPOOL_AT (256 * 1024) /* default spool_at */
#define IMAP_MAX_SPOOL_FILES 64    /* literal files of one command */

/* A spooled command: its text in memory, its large literals in files
 * (the argument parser reads lits[] to find them). */
struct imap_spool_lit {
	size_t at; /* offset in text where the literal's bytes would be */
	uint64_t len;
	int fd;
	bool nul; /* a NUL among its bytes (only a literal8 may hold one) */
};

struct imap_spool {
	struct buf text; /* the command, its spooled literals left out */
	struct imap_spool_lit lits[IMAP_MAX_SPOOL_FILES];
	size_t n_lits;
	uint64_t total;    /* bytes of the command so far, literals included */
	uint64_t lit_left; /* bytes of the current literal still to come */
	int lit_fd;        /* where they go: a file, or -1 for text */
};

enum imap_frame_mode {
	FRAMER_COMMAND, /* tagged commands with literals */
	FRAMER_LINE,    /* bare lines: SASL responses, IDLE's DONE */
};

/* Bytes an ID command may take whatever the line bound: the largest one
 * RFC 2971 allows (30 pairs, 30-octet fields, 1024-octet values) is about
 * 32,000 bytes quoted, and clients send it before login, where the line
 * bound is 8 KiB. */
#define IMAP_ID_MAX (40 * 1024)

/* RFC 7888 section 5: the largest non-synchronizing literal under LITERAL-. */
#define IMAP_LITERAL_MINUS_MAX 4096

struct imap_framer {
	size_t pos;        /* next byte to look at for LF */
	size_t line_start; /* start of the current line segment */
	size_t lit_end;    /* end of the current literal (in_literal) */
	uint64_t skip_lit; /* literal bytes still to drop (skipping) */
	bool in_literal;
	bool skipping; /* refused command: discard through its end */
	bool kind_known;
	bool is_append;
	bool is_id; /* ID: its own bound (IMAP_ID_MAX), also before login */
	/* Spooling: in[0] is a byte already written to the spool, left in
	 * the input so the loop keeps timing a partial command. */
	bool held;
	struct imap_spool *sp;    /* the command being spooled */
	struct imap_spool *ready; /* the framed command's, until taken */
	char tag[IMAP_MAX_TAG + 1];
};

/* What the framer needs from the session, so it can be tested alone. */
struct imap_frame_env {
	size_t max_line;      /* bytes of a line and of a non-APPEND command */
	uint64_t max_literal; /* bytes of one APPEND literal */
	bool authenticated;   /* APPEND literals allowed past max_line */
	/* 0: a non-synchronizing literal is bounded as any other (LITERAL+);
	 * else its most bytes, past which the command is refused BAD [TOOBIG]
	 * and the literal read and dropped (LITERAL-: IMAP_LITERAL_MINUS_MAX) */
	uint64_t nonsync_max;
	enum imap_frame_mode mode;
	const char *spool_dir; /* NULL: never spool (everything in memory) */
	uint64_t spool_at;     /* 0: IMAP_SPOOL_AT */
	/* outputs */
	void (*write)(void *arg, const char *text); /* continuation / errors */
	void (*raise_input)(void *arg, size_t max); /* conn_set_input_max */
	void *arg;
	unsigned bad; /* incremented per refused command */
};

enum imap_frame_res { IMAP_FRAME_COMMAND, IMAP_FRAME_AGAIN, IMAP_FRAME_DISCARD };

/* A zeroed framer (memory not yet initialised). */
void imap_framer_init(struct imap_framer *fr);
/* Forget any partial command and its spool files. */
void imap_framer_reset(struct imap_framer *fr);
enum imap_frame_res imap_framer_run(struct imap_framer *fr, struct imap_frame_env *env,
                                    const uint8_t *in, size_t len, size_t *used_r);
/*
 * After IMAP_FRAME_COMMAND: the spool of that command, or NULL when it is
 * wholly in the *used_r input bytes. With a spool, the command is the
 * spool's text (those input bytes are already in it). The caller owns it
 * and frees it with imap_spool_free() when the command is done.
 */
struct imap_spool *imap_framer_take_spool(struct imap_framer *fr);
void imap_spool_free(struct imap_spool **sp);

/* ------------------------------------------------------------------ */
/* Arguments                                                           */

enum imap_arg_type { ARG_ATOM, ARG_QUOTED, ARG_LITERAL, ARG_LIST };

struct imap_arg {
	enum imap_arg_type type;
	/* NUL-terminated copy (strings; NUL refused). NULL for a literal8
	 * holding NUL, and for APPEND's literals after the mailbox name,
	 * which are used as bytes only. */
	const char *str;
	size_t len;
	const uint8_t *raw; /* literal bytes (may hold NUL: literal8); NULL if spooled */
	int fd;             /* spooled literal: bytes [0, len) of this file; else -1 */
	/* ~{n} (RFC 3516): bytes, never a string; the parser takes it only
	 * in APPEND, and only a literal8 may hold NUL. */
	bool literal8;
	struct imap_arg *list; /* ARG_LIST children */
	size_t n;
};

/* A parsed command line. */
struct imap_parsed {
	const char *tag;
	const char *name; /* upper-cased */
	bool uid;         /* "UID <name>" */
	struct imap_arg *args;
	size_t n;
};

/*
 * Parse a complete framed command. 0 on success; ROOST_EINVAL with *err_r a
 * static reason (p->tag set when the tag was readable, else NULL);
 * ROOST_ETOOBIG past IMAP_MAX_DEPTH / IMAP_MAX_ARGS, or when the parse
 * would take the arena past its max. Strings point into the arena, literal
 * bytes (raw) into data.
 */
int imap_parse_command(struct arena *a, const uint8_t *data, size_t len, struct imap_parsed *p,
                       const char **err_r);
/* The same for a spooled command; its spooled literals get fd >= 0. Valid
 * while sp lives. */
int imap_parse_spooled(struct arena *a, const struct imap_spool *sp, struct imap_parsed *p,
                       const char **err_r);

bool imap_arg_is_string(const struct imap_arg *a); /* atom, quoted, literal */
bool imap_arg_is_astring(const struct imap_arg *a);
bool imap_arg_atom_eq(const struct imap_arg *a, const char *word); /* case-insensitive */
/* The atom NIL, where the grammar allows nstring (elsewhere NIL is an
 * atom like any other: SEARCH SUBJECT NIL searches for "NIL"). */
bool imap_arg_is_nil(const struct imap_arg *a);

/* ------------------------------------------------------------------ */
/* Sequence sets                                                       */

/* '*' before seqset_resolve(): 0, which no nz-number is (4294967295 is one) */
#define SEQ_STAR 0

struct seq_range {
	uint32_t lo, hi;
};

struct seqset {
	struct seq_range *r;
	size_t n;
};

/* Parse "1:3,5,*:7" (arena-allocated). ROOST_EINVAL when malformed or 0. */
int seqset_parse(struct arena *a, const char *text, struct seqset *set_r);
/* Replace '*' by star, order each range, sort and merge. */
void seqset_resolve(struct seqset *set, uint32_t star);
/* On a resolved set. */
bool seqset_contains(const struct seqset *set, uint32_t v);
/* Append "1:3,5" for the ascending values vals[0..n) to out. */
void seqset_format(const uint32_t *vals, size_t n, struct buf *out);

/* Date formats. "17-Jul-1996 02:44:25 -0700" -> epoch; "1-Feb-1994" ->
 * (y,m,d). */
int imap_parse_datetime(const char *s, int64_t *t_r);
int imap_parse_date(const char *s, int *y_r, int *m_r, int *d_r);
void imap_format_datetime(int64_t t, char out[32]);

/* ------------------------------------------------------------------ */
/* LIST patterns (imap_match.c)                                        */

struct imap_match;

/*
 * Compile a mailbox pattern (storage form, UTF-8; '*' and '%' wildcards,
 * '/' the separator) into the arena. ROOST_ETOOBIG past IMAP_MAX_PATTERN
 * bytes. Matching then costs O(strlen(name) * len / 64), never more.
 */
int imap_match_compile(struct arena *a, const char *pat, size_t len, struct imap_match **m_r);
/* Does name (storage form) match? "INBOX" and the "INBOX" of "INBOX/..."
 * match case-insensitively. Thread-safe on a compiled pattern. */
bool imap_match(const struct imap_match *m, const char *name);

#endif
