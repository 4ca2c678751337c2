#ifndef ROOST_MESSAGE_IMPL_H
#define ROOST_MESSAGE_IMPL_H

/*
 * Internals shared by the message_*.c files (not part of the contract in
 * include/roost/message.h). Tokens are (pointer, length) into the message.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "roost/buf.h"
#include "roost/message.h"

/* ---- the part tree (message.c) ---- */

struct mpart {
	struct message_part pub; /* first: a message_part * is an mpart * */
	struct mpart *last_child;
	uint8_t *boundary; /* "--" + boundary of a multipart, owned */
	size_t boundary_len;
	unsigned depth;
	uint64_t blf_hdr;  /* bare LFs before the header (while parsing) */
	uint64_t blf_body; /* bare LFs before the body (while parsing) */
	bool closed;       /* close delimiter seen */
	bool digest;       /* multipart/digest: children default to message/rfc822 */
};

struct part_chunk;

struct message {
	const uint8_t *data;
	size_t len;
	struct message_limits limits;
	struct mpart *root;
	struct part_chunk *chunks;
	unsigned nparts;
};

static inline const struct mpart *
mpart_c(const struct message_part *p)
{
	return (const struct mpart *)p;
}

/* ---- header blocks (message_header.c) ---- */

struct hdr_field {
	const uint8_t *name;
	size_t name_len;
	const uint8_t *value; /* after the colon, leading WSP skipped; folds kept */
	size_t value_len;     /* up to, not including, the field's final line end */
	const uint8_t *full;  /* the whole field incl. its final line end */
	size_t full_len;
	bool has_colon;
};

struct hdr_iter {
	const uint8_t *p, *end;
};

void message_hdr_iter_init(struct hdr_iter *it, const uint8_t *hdr, size_t len);
/* Next field; false at the blank line or the end of the block. */
bool message_hdr_iter_next(struct hdr_iter *it, struct hdr_field *f);
bool message_hdr_name_eq(const struct hdr_field *f, const char *name);
/* Append value with CR and LF removed (RFC 5322 unfolding). */
int message_hdr_unfold(const uint8_t *v, size_t len, struct buf *out);
/* First field named name in the block; false if none. */
bool message_hdr_find(const uint8_t *hdr, size_t len, const char *name, struct hdr_field *f);

/* ---- RFC 2045 structured fields (message_mime.c) ---- */

struct message_param {
	char *name;  /* as written, NUL-terminated */
	char *value; /* unquoted, NUL-terminated (may hold NULs: see len) */
	size_t value_len;
};

struct message_params {
	struct message_param *v;
	size_t n, cap;
};

#define MIME_MAX_PARAMS 256

struct content_type {
	const uint8_t *type, *sub; /* raw tokens ("" when broken) */
	size_t type_len, sub_len;
	struct message_params params;
	bool broken; /* not "type/subtype" [";" params] */
};

void message_params_free(struct message_params *ps);
const struct message_param *message_params_get(const struct message_params *ps, const char *name);
/* "type/subtype; params"; always true (ct->broken for a malformed value).
 * Free with message_content_type_free(). */
bool message_parse_content_type(const uint8_t *v, size_t len, struct content_type *ct);
/* "value; params" of Content-Disposition (value may be empty). */
bool message_parse_disposition(const uint8_t *v, size_t len, struct content_type *ct);
/* A Content-Transfer-Encoding value: its token; false unless it is one
 * token and nothing else (then "7bit" applies). */
bool message_parse_cte(const uint8_t *v, size_t len, const uint8_t **tok_r, size_t *len_r);
void message_content_type_free(struct content_type *ct);
bool message_token_eq(const uint8_t *t, size_t tlen, const char *s);

/* lexer */
struct lex {
	const uint8_t *p, *end;
};
/* false when it ran into an unterminated comment (consumed to the end) */
bool message_lex_skip_cfws(struct lex *lx);
/* A quoted string at lx->p (which must be '"'): append its content
 * unquoted; false when it is not terminated (the input is used up). */
bool message_lex_quoted(struct lex *lx, struct buf *out);

/* ---- encodings and charsets (message_encoded.c, message_charset.c) ---- */

/* Append data in charset converted to UTF-8 (invalid bytes become U+FFFD). */
int message_charset_to_utf8(const char *charset, const uint8_t *data, size_t len, struct buf *out);
/* The texts of RFC 2047 encoded words, "Q" and "B" (a part's body goes
 * through core/cte.c: message_part_decode()). */
int message_qp_decode(const uint8_t *data, size_t len, struct buf *out);
int message_b64_decode(const uint8_t *data, size_t len, struct buf *out);

/* ---- IMAP strings (message_imap.c) ---- */
void message_imap_nstring(struct buf *out, const uint8_t *s, size_t len, bool nil);
/* Without its CR and LF characters. */
void message_imap_nolf(struct buf *out, const uint8_t *s, size_t len);
/* Subjects and display names, as Dovecot writes them "for humans": white
 * space runs collapsed to one space, trimmed, NUL as 0x80. */
void message_imap_human(struct buf *out, const uint8_t *s, size_t len);

/* ---- addresses (message_address.c) ---- */
/* Append the IMAP address structures of a header value (without the
 * enclosing parentheses of the list); returns how many. */
size_t message_address_list_entries(const uint8_t *v, size_t len, struct buf *out);
/* The same addresses as text, "name <mailbox@host>, ..." (names decoded). */
size_t message_address_list_text(const uint8_t *v, size_t len, struct buf *out);

#endif
