#ifndef ROOST_MBOX_H
#define ROOST_MBOX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "roost/buf.h"

/*
 * The mbox format (a file of messages, each after a "From " line), read
 * and written for `roost import` and `roost export`. Pure functions over
 * memory, thread-safe; the reader is zero-copy over the caller's bytes
 * (typically a mapped file) and never allocates.
 *
 * Reading. A message starts at a line "From SENDER DATE" whose DATE parses
 * as asctime ("Thu Nov 24 18:22:48 1986", optionally with a numeric zone
 * before or after the year) -- the rule mutt applies, so an unquoted
 * "From here" in a body does not split a message. The blank line before
 * the next From_ line is the separator, not part of the message.
 *
 * Quoting (">From "). mboxo quotes only "From " (">From "), so a body line
 * ">From " does not survive; mboxrd quotes every ">*From " with one more
 * '>', which is reversible. Reading undoes the one the file used;
 * mbox_detect() guesses it. Writing is always mboxrd.
 *
 * State headers. Status: (R = \Seen), X-Status: (A \Answered, F \Flagged,
 * T \Draft, D \Deleted) and X-Keywords: carry IMAP state in the file;
 * X-UID:, X-IMAPbase: and X-IMAP: are the UIDs Dovecot and UW-IMAP keep
 * there. Reading takes them into struct mbox_meta and removes them from
 * the message (they describe the file, not the message, and the writer
 * adds them back from the store), so import then export gives the file's
 * state back and export then import gives the stored bytes back.
 *
 * Line ends. Stored messages end their lines with CRLF (as SMTP and IMAP
 * carry them); an mbox file uses LF. The reader turns each bare LF into
 * CRLF, the writer each CRLF into LF. A stored message whose last line has
 * no line end gets one in the file (mbox cannot say otherwise).
 */

enum mbox_format {
	MBOX_FORMAT_AUTO = 0,
	MBOX_FORMAT_MBOXRD,
	MBOX_FORMAT_MBOXO,
};

/* A reader over data[0..len), which must outlive it. */
struct mbox_reader {
	const uint8_t *data;
	size_t len;
	size_t pos; /* start of the next From_ line, len at the end */
};

/* One message as the file holds it: raw[0..raw_len) is still quoted, with
 * LF line ends, borrowed from the reader's data. */
struct mbox_entry {
	const uint8_t *from_line; /* "From ...", without its line end */
	size_t from_len;
	const uint8_t *raw;
	size_t raw_len;
	int64_t date;  /* the From_ line's date, seconds since the epoch, UTC */
	size_t offset; /* of the From_ line in data */
};

/* What the state headers said. keywords are malloc'ed copies (valid
 * keywords only, at most MBOX_MAX_KEYWORDS); free with mbox_meta_free(). */
#define MBOX_MAX_KEYWORDS 26
struct mbox_meta {
	uint32_t flags; /* enum msg_flag bits (storage.h) */
	char *keywords[MBOX_MAX_KEYWORDS];
	size_t n_keywords;
	uint32_t uid;         /* X-UID:, 0 when absent */
	uint32_t uidvalidity; /* X-IMAPbase:'s first number, 0 when absent */
	bool pseudo;          /* X-IMAP: UW-IMAP's folder-data message, not mail */
};

/*
 * Start reading. Leading blank lines are skipped; an empty file holds no
 * message. ROOST_EINVAL when the first other line is not a From_ line (not
 * an mbox: the caller says so rather than importing one huge message).
 */
int mbox_reader_init(struct mbox_reader *r, const uint8_t *data, size_t len);
/* The next message: 1 and *e_r filled, 0 at the end. */
int mbox_next(struct mbox_reader *r, struct mbox_entry *e_r);

/* mboxrd when some line starts ">>From " (an mboxo writer leaves those as
 * they were, so they are rare there), mboxo otherwise; the two read alike
 * when no such line exists. */
enum mbox_format mbox_detect(const uint8_t *data, size_t len);

/* Parse line[0..len) ("From SENDER DATE", no line end) as a From_ line:
 * true and *date_r when it is one. */
bool mbox_from_line_date(const uint8_t *line, size_t len, int64_t *date_r);

/*
 * Turn a raw entry into the message to store: unquote (format must be
 * MBOXRD or MBOXO), bare LF to CRLF, the state headers removed from the
 * header section into *meta_r. Appends to out (ROOST_ETOOBIG past its
 * maximum). *meta_r is filled even on failure; free it with
 * mbox_meta_free().
 */
int mbox_decode(const uint8_t *raw, size_t len, enum mbox_format format, struct buf *out,
                struct mbox_meta *meta_r);
void mbox_meta_free(struct mbox_meta *meta);

/*
 * Append msg[0..len) to out as one mboxrd entry: a From_ line with sender
 * (NULL or "" gives MAILER-DAEMON; spaces and controls become '_') and date
 * in UTC, the state headers for flags and keywords at the end of the
 * header section, CRLF to LF, ">*From " lines quoted, a line end at the
 * end and the blank separator line.
 */
int mbox_encode(struct buf *out, const uint8_t *msg, size_t len, const char *sender, int64_t date,
                uint32_t flags, const char *const *keywords, size_t n_keywords);

#endif
