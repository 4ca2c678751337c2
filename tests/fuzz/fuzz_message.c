/*
 * libFuzzer target: the message parser and every renderer over the part
 * tree it builds. Any crash, sanitizer report, leak or time-out is a bug:
 * message_parse accepts all bytes.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "roost/buf.h"
#include "roost/cte.h"
#include "roost/message.h"

#include "fuzz_target.h"

/* Each transfer decoding of a part's body (FETCH BINARY): stepped in
 * 7-octet pieces it makes as many octets as the counting pass says. */
static void
decode_all_ways(const uint8_t *b, size_t len)
{
	static const enum cte_kind kinds[] = {CTE_TEXT, CTE_BINARY, CTE_BASE64, CTE_QP};

	for (size_t k = 0; k < 4; k++) {
		struct cte_decoder d;
		uint8_t chunk[7];
		uint64_t size, made = 0;
		bool nul;
		size_t n;

		cte_measure(kinds[k], b, len, &size, &nul);
		cte_decoder_init(&d, kinds[k]);
		while ((n = cte_decode(&d, b, len, chunk, sizeof(chunk))) > 0)
			made += n;
		if (made != size)
			__builtin_trap();
	}
}

static void
walk(struct message *msg, const struct message_part *p, uint32_t *path, size_t depth,
     struct buf *out)
{
	static const char *const names[] = {"subject", "from", "content-type"};
	const struct message_part *c, *found;
	uint32_t n = 1;
	size_t len;
	const uint8_t *d = message_data(msg, &len);

	buf_reset(out);
	message_header_fields(d + p->header_off, p->header_len, names, 3, false, out);
	message_header_fields(d + p->header_off, p->header_len, names, 3, true, out);
	message_header_get(msg, p, "subject", true, out);
	message_header_get_all(msg, p, "received", false, out);
	message_part_decode(msg, p, out);
	decode_all_ways(d + p->body_off, p->body_len);
	if (p->is_message_rfc822)
		message_envelope(msg, p, out);
	if (depth < 16 && message_find_part(msg, path, depth, &found) < 0)
		__builtin_trap();
	for (c = p->children; c != NULL && depth < 16; c = c->next, n++) {
		if (p->is_multipart)
			path[depth] = n;
		else
			break;
		walk(msg, c, path, depth + 1, out);
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct message *msg;
	struct buf out = BUF_INIT(0);
	uint32_t path[17];
	int64_t t;

	if (message_parse(data, size, NULL, &msg) != 0)
		return 0;
	message_envelope(msg, NULL, &out);
	message_bodystructure(msg, NULL, true, &out);
	message_bodystructure(msg, NULL, false, &out);
	message_body_text(msg, &out);
	decode_all_ways(data, size);
	if (message_root(msg)->is_multipart)
		walk(msg, message_root(msg), path, 0, &out);
	message_free(&msg);

	buf_reset(&out);
	message_decode_words((const char *)data, size, &out);
	message_text_contains((const char *)data, size, "caf\xc3\xa9", 5);
	message_parse_date((const char *)data, size > 200 ? 200 : size, &t);
	buf_free(&out);
	return 0;
}
