#ifndef ROOST_MESSAGE_H
#define ROOST_MESSAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "roost/buf.h"

/*
 * The message (RFC 5322 + MIME) parser. One pass over a message held in
 * memory or mapped from storage; the parse result refers to the caller's
 * bytes by offset, so the bytes must outlive the struct message. Hostile
 * input never crashes or takes more than linear time: past the limits
 * (nesting depth, part count, header size/count) the rest is treated as
 * opaque text. Parse results are immutable and may be read by any thread.
 */

struct message;

struct message_limits {
	unsigned max_depth;         /* default 100 */
	unsigned max_parts;         /* default 10000 */
	size_t max_header_size;     /* default 1 MiB per header block */
	unsigned max_header_fields; /* default 10000 */
};
#define MESSAGE_LIMITS_DEFAULT                                                                     \
	{                                                                                          \
		100, 10000, 1024 * 1024, 10000                                                     \
	}

/* One MIME part. Offsets are into the whole message. */
struct message_part {
	size_t header_off, header_len; /* header block incl. the blank line */
	size_t body_off, body_len;
	uint64_t body_lines; /* lines (LFs) of the body (for BODYSTRUCTURE) */
	/* Sizes as IMAP sends them, every bare LF counted as CRLF (what
	 * BODYSTRUCTURE reports and Dovecot reports for LF-only Maildir files);
	 * equal to header_len/body_len for a CRLF message. */
	uint64_t header_vsize, body_vsize;
	const struct message_part *parent;
	const struct message_part *children; /* first child (multipart or message/rfc822) */
	const struct message_part *next;     /* next sibling */
	bool is_multipart;
	bool is_message_rfc822; /* children is the embedded message's top part */
};

/* Parse data[0..len). limits NULL = defaults. Always succeeds on any bytes
 * (malformed input degrades); returns ROOST_ETOOBIG only if len itself is
 * unreasonable (> SIZE_MAX/2). */
int message_parse(const uint8_t *data, size_t len, const struct message_limits *limits,
                  struct message **msg_r);
void message_free(struct message **msg);
const struct message_part *message_root(const struct message *msg);
/* The bytes given to message_parse (borrowed, as the caller owns them). */
const uint8_t *message_data(const struct message *msg, size_t *len_r);

/*
 * IMAP section lookup: path is the part numbers of BODY[1.2.3] (depth 0 =
 * the whole message). As RFC 3501 says, a non-multipart message has part 1 =
 * its body; a message/rfc822 part's numbers continue into the embedded
 * message. ROOST_ENOTFOUND for a part that does not exist.
 */
int message_find_part(const struct message *msg, const uint32_t *path, size_t depth,
                      const struct message_part **part_r);

/* IMAP renderers (RFC 3501 / 9051 syntax, quoting and literals included),
 * appended to out: ENVELOPE of the message (or of an embedded
 * message/rfc822 part), BODY (extended = false) or BODYSTRUCTURE. */
int message_envelope(const struct message *msg, const struct message_part *part, struct buf *out);
int message_bodystructure(const struct message *msg, const struct message_part *part, bool extended,
                          struct buf *out);

/*
 * Header fields of the block hdr[0..len): copy the fields named (or, with
 * not = true, all others) in order, folded lines intact, followed by the
 * blank line, as HEADER.FIELDS and HEADER.FIELDS.NOT return them.
 */
int message_header_fields(const uint8_t *hdr, size_t len, const char *const *names, size_t n,
                          bool not, struct buf *out);

/*
 * The value of the first field named name (case-insensitive) in the header
 * block of part (NULL = top level): unfolded, with RFC 2047 encoded words
 * decoded to UTF-8 when decode is true. ROOST_ENOTFOUND if absent.
 */
int message_header_get(const struct message *msg, const struct message_part *part, const char *name,
                       bool decode, struct buf *out);
/*
 * The first address of an address list header value v[0..len) (groups
 * entered, empty entries skipped): its display name (raw, encoded words
 * not decoded), local part and domain appended to name, mailbox and host.
 * 0, or ROOST_ENOTFOUND when the list holds no address. SORT keys.
 */
int message_address_first(const char *v, size_t len, struct buf *name, struct buf *mailbox,
                          struct buf *host);
/* Every value of name, each decoded, separated by "\n" (SEARCH HEADER). */
int message_header_get_all(const struct message *msg, const struct message_part *part,
                           const char *name, bool decode, struct buf *out);

/*
 * The addresses of every field named name, as ENVELOPE shows them and
 * written out as text: "name <mailbox@host>" (comments dropped, quoting
 * undone, encoded words in names decoded), ", " between addresses, "\n"
 * between fields (SEARCH FROM, TO, CC, BCC). ROOST_ENOTFOUND if absent.
 */
int message_header_addresses(const struct message *msg, const struct message_part *part,
                             const char *name, struct buf *out);

/* Decoded text of every text/ part (transfer encoding undone, charset
 * converted to UTF-8), parts separated by "\n" (SEARCH BODY/TEXT). */
int message_body_text(const struct message *msg, struct buf *out);
/* The content of one part with its Content-Transfer-Encoding undone
 * (BINARY[]); ROOST_EINVAL for an unknown encoding. */
int message_part_decode(const struct message *msg, const struct message_part *part,
                        struct buf *out);

/*
 * The addresses of an address-list header value v[0..len) (unfolded, not
 * decoded), in order: each mailbox, and each group as a GROUP entry (its
 * display name) before its members and a GROUP_END after them. Names are
 * as written (RFC 2047 words still encoded), NULL when absent; the strings
 * are valid during the call only. Broken input degrades as for ENVELOPE.
 */
enum message_addr_kind { MESSAGE_ADDR_MAILBOX, MESSAGE_ADDR_GROUP, MESSAGE_ADDR_GROUP_END };
struct message_address {
	enum message_addr_kind kind;
	const char *name, *mailbox, *host;
};
typedef void message_address_fn(const struct message_address *a, void *arg);
void message_address_walk(const uint8_t *v, size_t len, message_address_fn *fn, void *arg);

/*
 * What a part's header says about its content: type and subtype (lower
 * case; "text"/"plain" by default, "message"/"rfc822" in a digest), the
 * charset, name (Content-Disposition filename or Content-Type name,
 * RFC 2231 and 2047 decoded), disposition ("inline", "attachment" or
 * ""), Content-ID without its brackets, Content-Language, Content-Location
 * and the transfer encoding (lower case). Free with
 * message_part_info_free().
 */
struct message_part_info {
	char *type, *subtype, *charset, *name, *disposition, *cid, *language, *location, *cte;
};
void message_part_info(const struct message *msg, const struct message_part *part,
                       struct message_part_info *info_r);
void message_part_info_free(struct message_part_info *info);
/* The text of a part as UTF-8: transfer encoding undone, charset
 * converted. When either fails the bytes are kept as they were (invalid
 * UTF-8 replaced by U+FFFD) and *problem_r is set. */
void message_part_text(const struct message *msg, const struct message_part *part, struct buf *out,
                       bool *problem_r);

/* RFC 5322 date (obsolete forms too) to seconds since the epoch, UTC.
 * ROOST_EINVAL when unparseable. */
int message_parse_date(const char *text, size_t len, int64_t *time_r);
/* The same, and the zone the date was written in, in minutes east of UTC
 * (0 when unknown; NULL when not wanted): *time_r + 60 * *zone_min_r is
 * the writer's own wall clock, whose calendar date SENTON compares. */
int message_parse_date_zone(const char *text, size_t len, int64_t *time_r, int *zone_min_r);
/* RFC 2047 encoded words in text to UTF-8 (also used for SEARCH keys). */
int message_decode_words(const char *text, size_t len, struct buf *out);

/* Case-insensitive UTF-8 substring match as IMAP SEARCH uses it (ASCII and
 * Latin letters folded; a simple fold is acceptable per RFC 3501). */
bool message_text_contains(const char *haystack, size_t hlen, const char *needle, size_t nlen);
/*
 * The fold message_text_contains() applies, appended to out: text folded
 * once can then be searched for many folded needles with memmem() (SEARCH
 * with several keys over one message). Invalid UTF-8 is copied as it is.
 */
void message_text_fold(const char *text, size_t len, struct buf *out);

/*
 * The id (brackets dropped) of the root of the thread the raw message
 * data[0..len) belongs to, as its header names it: the first id of
 * References, else the first of In-Reply-To, else its own Message-ID;
 * appended to out. Reads the header block only. ROOST_ENOTFOUND when the
 * header names none. Thread-safe.
 */
int message_thread_root(const uint8_t *data, size_t len, struct buf *out);
/*
 * The THREADID (RFC 8474) of the raw message data[0..len) whose EMAILID is
 * emailid: a 64-bit FNV-1a digest of its thread root (above), so a message
 * and its replies agree on it wherever they are stored; emailid when the
 * header names no root (data may then be NULL). Never 0. Thread-safe.
 */
uint64_t message_thread_id(const uint8_t *data, size_t len, uint64_t emailid);

/* Characters (not bytes: up to four each) of a preview (RFC 8970 3). */
#define MESSAGE_PREVIEW_CHARS 256
/*
 * The preview of msg appended to out: up to MESSAGE_PREVIEW_CHARS
 * characters of UTF-8 from its first text part (plain preferred within
 * an alternative; HTML tags stripped; white space and control characters
 * collapsed to single spaces), nothing when it has no text part. IMAP
 * PREVIEW and JMAP Email.preview both use it. Thread-safe.
 */
void message_preview(const struct message *msg, struct buf *out);
/* The same treatment of one text (NUL-terminated UTF-8), html when it is
 * HTML. */
void message_preview_text(const char *text, bool html, struct buf *out);

#endif
