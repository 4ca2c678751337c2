/*
 * FETCH's parse cache record (roost/message_cache.h): ENVELOPE, BODY,
 * BODYSTRUCTURE, the preview, the size and the BINARY sizes of a message,
 * made here when a FETCH first parses a message that was not delivered
 * (APPEND, COPY of an old one, a file dropped into a Maildir); delivery
 * makes it beforehand.
 */
#include "roost/buf.h"
#include "roost/message_cache.h"
#include "roost/storage.h"

#include "imap_fetch.h"

/* Store pc's parts (when have_parts), vsize (when have_vsize) and the
 * BINARY sizes bin[0..bin_len) (each text may point into pc->raw). */
void
fetch_cache_store_bin(struct mailbox *mb, uint32_t uid, struct message_cache *pc, const char *env,
                      size_t env_len, const char *body, size_t body_len, const char *bs,
                      size_t bs_len, const char *pv, size_t pv_len, const char *bin, size_t bin_len)
{
	struct buf r = BUF_INIT(0);

	message_cache_encode(&r, pc->vsize, env, env_len, body, body_len, bs, bs_len, pv, pv_len,
	                     bin, bin_len);
	(void)mailbox_cache_set(mb, uid, r.data, r.len);
	buf_free(&pc->raw);
	pc->raw = r;
	if (!message_cache_decode(pc))
		pc->have_parts = false;
}

/* The same, keeping the BINARY sizes the record held. */
void
fetch_cache_store(struct mailbox *mb, uint32_t uid, struct message_cache *pc, const char *env,
                  size_t env_len, const char *body, size_t body_len, const char *bs, size_t bs_len,
                  const char *pv, size_t pv_len)
{
	fetch_cache_store_bin(mb, uid, pc, env, env_len, body, body_len, bs, bs_len, pv, pv_len,
	                      pc->bin, pc->bin_len);
}

bool
fetch_cache_build(struct mailbox *mb, uint32_t uid, const struct message *msg,
                  struct message_cache *pc)
{
	struct buf r = BUF_INIT(0);

	if (message_cache_make(msg, pc->vsize, &r) < 0) {
		buf_free(&r);
		return false;
	}
	(void)mailbox_cache_set(mb, uid, r.data, r.len);
	buf_free(&pc->raw);
	pc->raw = r;
	return message_cache_decode(pc) && pc->have_parts;
}
