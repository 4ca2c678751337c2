#ifndef ROOST_SMTP_H
#define ROOST_SMTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "roost/buf.h"

/*
 * SMTP (RFC 5321), submission (RFC 6409), implicit-TLS submission (RFC
 * 8314) and LMTP (RFC 2033), one state machine for all four listeners. The
 * listener's name (conn_listener()) picks the role:
 *
 *   smtp        MX: local recipients; other domains queued for relay
 *               only after AUTH or from [smtp] trusted_networks
 *   submission  AUTH required before MAIL
 *   smtps       as submission, TLS from the first byte
 *   lmtp        LHLO, one reply per recipient after the data
 *
 * The rest of this header is the session's building blocks, exported so that
 * tests/unit/check_smtp.c can drive them without a connection: the input
 * framer (runs on the loop thread), the DATA decoder (dot-unstuffing, the
 * end-of-data rule, bare CR/LF policy) and the command parsers. All are
 * pure functions over caller-owned state; none allocates except where said.
 */
extern const struct proto_ops smtp_proto_ops;

/* ---- DATA decoder ---- */

/*
 * Only CR LF "." CR LF ends the data, where the CR LF before the dot is a
 * real one (or the start of the data). A bare LF or a bare CR is never a line
 * end for this rule, so none of the smuggling sequences ("\n.\n",
 * "\n.\r\n", "\r.\r", "\r\n.\r", ...) ends a message early. Bare CR and
 * bare LF are counted in bare_eol; with normalize they are written out as
 * CR LF, otherwise as they came (the session rejects such a message).
 * A leading dot is removed from every line that starts with one
 * (RFC 5321 4.5.2).
 */
enum smtp_dec_state {
	SMTP_DEC_LINE_START, /* after a real CR LF, or at the beginning */
	SMTP_DEC_DOT,        /* a dot at the start of a line, not yet written */
	SMTP_DEC_DOT_CR,     /* line start, dot, CR */
	SMTP_DEC_MID,        /* inside a line */
	SMTP_DEC_CR,         /* CR inside a line, not yet written */
	SMTP_DEC_DONE,       /* end of data seen */
};

struct smtp_data_dec {
	enum smtp_dec_state state;
	bool normalize;    /* bare CR / bare LF become CR LF */
	uint64_t bare_eol; /* bare CRs and LFs seen */
	uint64_t out_len;  /* bytes of message produced (counted even without out) */
	bool overflow;     /* out refused an append: stop writing, keep counting */
};

void smtp_data_dec_init(struct smtp_data_dec *d, bool normalize);
/*
 * Decode in[0..len). Decoded bytes go to out (NULL: only count them). Stops
 * right after the end-of-data line. Returns the number of bytes consumed;
 * d->state == SMTP_DEC_DONE tells that the data ended there. When out
 * is full (ROOST_ETOOBIG from buf) the bytes are still consumed and
 * counted in out_len, so the caller can answer 552 after reading to the end.
 */
size_t smtp_data_decode(struct smtp_data_dec *d, const uint8_t *in, size_t len, struct buf *out);

/* ---- the framer ---- */

enum smtp_frame_mode {
	SMTP_FRAME_LINE, /* command lines */
	SMTP_FRAME_DATA, /* DATA body up to CRLF.CRLF */
	SMTP_FRAME_BDAT, /* BDAT chunk: a byte count */
	SMTP_FRAME_SKIP, /* an over-long line being thrown away */
};

/*
 * Loop-thread state of the framer. The worker switches the mode to DATA
 * (after 354); the framer switches it to BDAT itself on seeing a BDAT line
 * with a valid size (so the chunk is consumed whatever the worker decides
 * about it) and back to LINE at the end of a DATA body or a chunk.
 */
struct smtp_framer {
	enum smtp_frame_mode mode;
	struct smtp_data_dec dec; /* DATA: the framer's own copy of the scan */
	size_t scanned;           /* bytes of the current input already scanned */
	uint64_t bdat_left;       /* BDAT: chunk bytes not yet framed */
	/* What the last SMTP_FR_COMMAND was, for the worker: a LINE, a piece
	 * of DATA or a piece of a BDAT chunk. The worker dispatches on this,
	 * never on its own idea of the state, so the two cannot disagree. */
	enum smtp_frame_mode kind;
	/* The last line was a BDAT the framer accepted: its size and LAST. */
	bool line_bdat;
	uint64_t bdat_size;
	bool bdat_last;
};

enum smtp_frame_result {
	SMTP_FR_COMMAND,   /* *used_r bytes: a line, or a piece of DATA/BDAT */
	SMTP_FR_AGAIN,     /* need more input */
	SMTP_FR_LONG_LINE, /* a line over max_line ended: drop *used_r, answer 500 */
	SMTP_FR_SKIP,      /* drop *used_r bytes of an over-long line, nothing else */
};

void smtp_framer_init(struct smtp_framer *f);
/* Enter DATA framing (the worker calls it when it answers 354). */
void smtp_framer_start_data(struct smtp_framer *f, bool normalize);
/*
 * Frame the start of in[0..len). max_line bounds a command line (CR LF
 * included); chunk is the size from which a piece of DATA/BDAT is handed
 * on without waiting for more (must be below the runtime's input bound).
 */
enum smtp_frame_result smtp_frame(struct smtp_framer *f, const uint8_t *in, size_t len,
                                  size_t max_line, size_t chunk, size_t *used_r);
/* "BDAT <size> [LAST]": 0 and the values, or ROOST_EINVAL. */
int smtp_parse_bdat(const char *args, uint64_t *size_r, bool *last_r);

/* ---- command parsing ---- */

#define SMTP_MAX_PATH 256 /* RFC 5321 4.5.3.1.3, without the brackets */
#define SMTP_MAX_LOCAL 64
#define SMTP_MAX_DOMAIN 255

/* Split a line (CR LF removed) into the verb (copied upper-cased into verb,
 * size verblen) and *args_r, the rest after one space (or ""). ROOST_EINVAL
 * when the verb is empty, too long or not letters. */
int smtp_parse_verb(const char *line, char *verb, size_t verblen, const char **args_r);

struct smtp_mail_params {
	uint64_t size;   /* SIZE=, 0 when absent */
	bool body_8bit;  /* BODY=8BITMIME */
	bool binarymime; /* BODY=BINARYMIME (RFC 3030): BDAT only */
	bool requiretls; /* REQUIRETLS (RFC 8689): the caller checks for TLS */
	bool smtputf8;
	char ret[5];     /* "", "FULL" or "HDRS" */
	char envid[101]; /* xtext as given, "" when absent */
};

struct smtp_rcpt_params {
	char notify[40]; /* "", "NEVER" or a list of SUCCESS,FAILURE,DELAY */
	char orcpt[520]; /* "rfc822;xtext" as given, "" when absent */
};

/*
 * A reverse-path or forward-path with its parameters: args is what follows
 * "MAIL FROM:" / "RCPT TO:" (leading spaces allowed, the <> brackets
 * required). The address is copied to addr (size SMTP_MAX_PATH + 1), "" for
 * the null path <> (only allowed when allow_null). Source routes are
 * dropped; the brackets may be missing (lenient, as most MTAs are). "<Postmaster>"
 * without a domain gives "postmaster". *params_r is the rest after the path,
 * leading spaces skipped. Returns 0 or ROOST_EINVAL for bad syntax.
 */
int smtp_parse_path(const char *args, bool allow_null, char *addr, const char **params_r);
/*
 * Parameters "KEY[=VALUE] ..." of MAIL / RCPT. On error *bad_r points at the
 * offending parameter: ROOST_EINVAL for a bad value or a duplicate,
 * ROOST_ENOTSUP for an unknown keyword, ROOST_ETOOBIG for SIZE over max_size.
 */
int smtp_parse_mail_params(const char *params, uint64_t max_size, struct smtp_mail_params *p,
                           const char **bad_r);
int smtp_parse_rcpt_params(const char *params, struct smtp_rcpt_params *p, const char **bad_r);
/* The decimal number p[0..len) (digits only, as BDAT and SIZE= carry):
 * 0 and *r, or ROOST_EINVAL when empty, not all digits or over UINT64_MAX. */
int smtp_parse_u64(const char *p, size_t len, uint64_t *r);
/* The address has bytes >= 0x80 (needs SMTPUTF8). */
bool smtp_addr_is_utf8(const char *addr);
/* RFC 3461 xtext: printable ASCII except '+' and '=', and "+XX" hex. */
bool smtp_xtext_valid(const char *s, size_t len);

#endif
