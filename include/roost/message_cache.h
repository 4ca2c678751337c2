#ifndef ROOST_MESSAGE_CACHE_H
#define ROOST_MESSAGE_CACHE_H

/*
 * The parse cache record of a message: what storage's mailbox_cache_get()
 * and mailbox_cache_set() hold for it, so FETCH (ENVELOPE, BODYSTRUCTURE,
 * RFC822.SIZE, PREVIEW, BINARY.SIZE) does not parse the message again.
 * Made when a message is delivered (storage_deliver()) or when a FETCH
 * first parses it, read by IMAP's FETCH.
 *
 * The record: "R5 <vsize> <env> <body> <bs> <preview> <bin>\n" and the
 * five texts. vsize is RFC822.SIZE: the octets BODY[] sends (a bare LF
 * counts as CRLF). env is the ENVELOPE, body and bs the BODY and
 * BODYSTRUCTURE (IMAP syntax), preview RFC 8970's text (at most 256
 * characters of UTF-8, 1 KiB). bin holds the decoded sizes of the BINARY
 * sections measured so far, a line each, "<part> <octets> <nul>\n" (part
 * "0" for the whole message, nul 1 when a NUL is among the octets), at most
 * MESSAGE_CACHE_BINSIZE_MAX octets of them. "R4" records are the same
 * without bin. "R3" records are the same without the preview: their texts
 * are used and a PREVIEW makes the record again. A record with env = 0
 * holds the size only (nothing parsed yet: an envelope is never empty). An
 * "R2" record is the same with an envelope rendered before obsolete phrases
 * kept their spaces: its size is used, its texts are made again. "R1"
 * records (no size) are made again whole.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "roost/buf.h"
#include "roost/message.h"

#define MESSAGE_CACHE_BINSIZE_MAX 4096

/* A decoded record: the texts point into raw. */
struct message_cache {
	struct buf raw;
	const char *env, *body, *bs, *pv, *bin;
	size_t env_len, body_len, bs_len, pv_len, bin_len;
	uint64_t vsize;
	bool have_vsize, have_parts, have_preview;
};

/* Decode pc->raw (a record as stored) into pc's fields. false when it is
 * no record of a known version (then nothing is to be used). */
bool message_cache_decode(struct message_cache *pc);

/* A record of the given texts, appended to out. */
void message_cache_encode(struct buf *out, uint64_t vsize, const char *env, size_t env_len,
                          const char *body, size_t body_len, const char *bs, size_t bs_len,
                          const char *pv, size_t pv_len, const char *bin, size_t bin_len);

/* The whole record of msg (parsed from the bytes IMAP sends: CRLF line
 * ends), vsize octets long, appended to out: envelope, body structures and
 * preview, no BINARY sizes yet. 0, or ROOST_EINVAL when msg yields no
 * envelope (nothing appended). Thread-safe. */
int message_cache_make(const struct message *msg, uint64_t vsize, struct buf *out);

#endif
