#ifndef ROOST_POP3_H
#define ROOST_POP3_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * POP3 (RFC 1939, 2449 CAPA, 2595 STLS, 5034 AUTH, 6856 UTF8) serving the
 * pop3 and pop3s listeners. The service itself is pop3_proto_ops; the rest
 * of this header is the pure, thread-safe machinery it is built from
 * (framer, line parser, message encoder, UIDL, maildrop lock), exported so
 * the unit tests can drive it directly.
 */

struct proto_ops;

/* The protocol handler registered for "pop3" and "pop3s". */
extern const struct proto_ops pop3_proto_ops;

/* ---- framing: one command line at a time ---- */

/*
 * State of the framer of one connection. The runtime hands the frame hook
 * everything buffered each time; scanned remembers how far the previous call
 * looked, so only new bytes are searched for the line end.
 */
struct pop3_framer {
	size_t scanned; /* bytes already known to hold no LF */
	bool skipping;  /* inside an overlong line: drop bytes up to its LF */
};

enum pop3_frame_res {
	POP3_FRAME_LINE,    /* *used_r bytes are one line, LF included */
	POP3_FRAME_AGAIN,   /* no LF yet and still within max */
	POP3_FRAME_DISCARD, /* drop *used_r bytes of an overlong line; nothing to answer yet */
	POP3_FRAME_TOOLONG, /* drop *used_r bytes: the end of an overlong line; answer -ERR */
};

/* Find one line (ending in LF) at the start of in[0..len). Lines longer
 * than max bytes (terminator included) are dropped as they arrive and
 * reported once, as POP3_FRAME_TOOLONG, when their LF comes. */
enum pop3_frame_res pop3_frame(struct pop3_framer *f, const uint8_t *in, size_t len, size_t max,
                               size_t *used_r);

/* ---- parsing one command line ---- */

#define POP3_MAX_ARGS 3

struct pop3_arg {
	const uint8_t *p;
	size_t len;
};

struct pop3_line {
	char keyword[5]; /* upper-cased, NUL-terminated, 1-4 letters/digits */
	size_t nargs;    /* arguments split on spaces, at most POP3_MAX_ARGS */
	bool too_many;   /* more than POP3_MAX_ARGS arguments were present */
	struct pop3_arg args[POP3_MAX_ARGS];
	struct pop3_arg rest; /* everything after the keyword's space (PASS) */
};

/*
 * Parse line[0..len) (terminator already removed). Tokens point into line.
 * ROOST_EINVAL for an empty line, a NUL byte, or a keyword that is not 1-4
 * ASCII letters/digits followed by a space or the end.
 */
int pop3_parse_line(const uint8_t *line, size_t len, struct pop3_line *r);

/* Remove a trailing LF or CRLF from cmd[0..*len). */
void pop3_strip_eol(const uint8_t *cmd, size_t *len);

/* A decimal number: 1-10 digits, nothing else (no sign, no space), at most
 * UINT32_MAX. ROOST_EINVAL otherwise. */
int pop3_parse_number(const uint8_t *p, size_t len, uint32_t *r);

/* ---- sending a message: CRLF line ends, dot-stuffing ---- */

#define POP3_ALL_LINES UINT64_MAX

/*
 * Streaming encoder of a stored message into a multi-line response body:
 * every LF that is not preceded by CR is sent as CRLF, a lone CR is data,
 * a '.' starting a line is doubled, a last line without LF gets CRLF, and
 * pop3_enc_finish() adds the terminating ".\r\n". With body_lines other
 * than POP3_ALL_LINES it implements TOP: the header, the blank line, then
 * at most body_lines lines of the body.
 */
struct pop3_encoder {
	uint64_t body_lines; /* body lines still to send */
	bool line_start;     /* the next byte starts a line */
	bool cr;             /* a CR was seen and not yet sent */
	bool in_body;        /* the blank line after the header was sent */
	bool done;           /* TOP limit reached: the rest is not sent */
};

void pop3_enc_init(struct pop3_encoder *e, uint64_t body_lines);
/*
 * Encode from in[0..len) into out[0..cap). Returns the bytes written and
 * sets *used_r to the input consumed. Each input byte needs at most 2
 * output bytes; with cap >= 2 every call makes progress (consumes input or
 * writes output). Once the encoder is done (TOP limit) it consumes
 * everything and writes nothing.
 */
size_t pop3_enc_feed(struct pop3_encoder *e, const uint8_t *in, size_t len, uint8_t *out,
                     size_t cap, size_t *used_r);
#define POP3_ENC_FINISH_MAX 6
/* Flush the state and write ".\r\n"; out must hold POP3_ENC_FINISH_MAX. */
size_t pop3_enc_finish(struct pop3_encoder *e, uint8_t *out);

/* The octets RETR sends for data[0..len) as STAT and LIST report them:
 * with the CRLF conversion, without dot-stuffing and the final ".\r\n". */
uint64_t pop3_octets(const uint8_t *data, size_t len);

/* ---- UIDL ---- */

#define POP3_UIDL_LEN 16
/* The unique-id of a message: UID then UIDVALIDITY, each as 8 upper-case
 * hex digits (Dovecot's default "%08Xu%08Xv", so a Maildir moved from
 * Dovecot keeps its UIDLs). out gets POP3_UIDL_LEN chars and a NUL. */
void pop3_uidl(uint32_t uidvalidity, uint32_t uid, char out[POP3_UIDL_LEN + 1]);

/* ---- maildrop lock ---- */

/*
 * Lock user's maildrop for one POP3 session: flock(LOCK_EX|LOCK_NB) on
 * <data_dir>/pop3-locks/<user>.lock, so sessions of this process and of
 * other processes on the same data_dir exclude each other and the lock dies
 * with the descriptor (session end or process death). 0 and the descriptor
 * in *fd_r; ROOST_EINUSE when another session holds it; ROOST_EIO (logged).
 */
int pop3_lock_acquire(const char *data_dir, const char *user, int *fd_r);
/* Release the lock; *fd becomes -1. Accepts -1. */
void pop3_lock_release(int *fd);

#endif
