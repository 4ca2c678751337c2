#ifndef ROOST_IMAP_FETCH_H
#define ROOST_IMAP_FETCH_H

/*
 * Private to the FETCH files: imap_fetch.c (the command, and the sending
 * of a planned response a chunk at a time), imap_fetch_plan.c (a message's
 * response planned as text and ranges of the message: items, BODY[section]),
 * imap_fetch_binary.c (BINARY and BINARY.SIZE) and imap_fetch_cache.c (the
 * parse cache record).
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "roost/cte.h"
#include "roost/message.h"
#include "roost/message_cache.h"
#include "roost/storage.h"

#include "imap_impl.h"

/*
 * A message's response is planned whole when FETCH reaches it: every item
 * is formatted into the plan's text as it will be sent, except literals
 * of the message's own bytes, which stay ranges of the message and are
 * copied out a chunk at a time as the client reads. So a 50 MB BODY[]
 * never sits in memory or in the output buffer, and FETCH yields (between
 * chunks, between messages) whenever the output is full.
 */
#define FETCH_CHUNK 16384

struct fetch_seg {
	bool from_msg; /* a range of the message, else of the plan's text */
	uint64_t off;  /* text: offset in it; message: raw offset of the first byte */
	uint64_t len;  /* octets to send (after CRLF conversion, or decoded) */
	bool half;     /* message: the first raw byte is a bare LF whose CR was sent */
	/* BINARY: the raw bytes [off, off + in_len) decoded as cte, the first
	 * skip decoded octets left out (partial); else cte is CTE_UNKNOWN */
	enum cte_kind cte;
	uint64_t in_len, skip;
};

/* FETCH between steps; in the command's arena, freed by fetch_state_free. */
struct fetch_state {
	/* The whole command. */
	struct fetch_req req;
	uint32_t *idx;  /* view indexes to answer, ascending */
	size_t n, next; /* how many, the next one to plan */
	bool *seen_now; /* per idx: \Seen set by this FETCH (NULL: none) */
	bool gone;      /* a message had disappeared: tagged NO */

	/* The message being sent. */
	bool busy;
	uint32_t uid;
	struct msg_view mv; /* kept across steps only when mv.holdable */
	bool have_mv;
	size_t raw_len; /* mv.len when the plan was made */
	bool crlf;      /* bare LFs in it go out as CRLF */
	struct buf text;
	struct fetch_seg *segs;
	size_t n_segs, cap_segs;
	size_t seg;             /* the segment being sent */
	uint64_t seg_sent;      /* octets of it written */
	size_t raw_pos;         /* message segment: the next raw byte */
	bool half;              /* message segment: raw_pos is a bare LF, CR written */
	struct cte_decoder dec; /* decoded segment: where the decoding is */

	bool unknown_cte; /* a BINARY part could not be decoded: tagged NO */
};

/* The BINARY sizes of the message being planned: those its cache record
 * holds, and those measured now (added when the plan is made). */
struct binsizes {
	const struct message_cache *pc;
	struct buf added;
};

/* imap_fetch_plan.c */
int fetch_plan(struct imap_cmd *cmd, struct fetch_state *st, size_t idx, bool add_flags);
size_t fetch_crlf_walk(const uint8_t *raw, size_t len, size_t *pos, bool *half, uint8_t *out,
                       size_t max);
void fetch_nul_out(uint8_t *p, size_t n);
void fetch_seg_add(struct fetch_state *st, bool from_msg, uint64_t off, uint64_t len, bool half);
void fetch_seg_add_decoded(struct fetch_state *st, uint64_t off, uint64_t in_len, enum cte_kind cte,
                           uint64_t skip, uint64_t len);
void fetch_seg_text(struct fetch_state *st, size_t *mark);

/* imap_fetch_binary.c */
int fetch_plan_binary(struct fetch_state *st, size_t *mark, struct binsizes *bz,
                      const struct fetch_item *it, const uint8_t *data, size_t len,
                      const struct message *msg, const uint8_t *raw, size_t raw_len);
bool fetch_binary_decodable(const struct fetch_req *req, const struct message *msg);

/* imap_fetch_cache.c */
void fetch_cache_store_bin(struct mailbox *mb, uint32_t uid, struct message_cache *pc,
                           const char *env, size_t env_len, const char *body, size_t body_len,
                           const char *bs, size_t bs_len, const char *pv, size_t pv_len,
                           const char *bin, size_t bin_len);
void fetch_cache_store(struct mailbox *mb, uint32_t uid, struct message_cache *pc, const char *env,
                       size_t env_len, const char *body, size_t body_len, const char *bs,
                       size_t bs_len, const char *pv, size_t pv_len);
bool fetch_cache_build(struct mailbox *mb, uint32_t uid, const struct message *msg,
                       struct message_cache *pc);

#endif
