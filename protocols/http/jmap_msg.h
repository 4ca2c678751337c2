#ifndef ROOST_JMAP_MSG_H
#define ROOST_JMAP_MSG_H

/*
 * Private to jmap_msg.c, jmap_msg_header.c and jmap_msg_body.c: a message's
 * header fields and its tree of body parts as the Email object is built
 * from them (RFC 8621 4.1).
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "roost/message.h"

#include "jmap_impl.h"

#define PATH_MAX_LEN 128

struct field {
	char *name;
	char *raw; /* the value as written after the colon, folds kept */
};

enum hform { F_RAW, F_TEXT, F_ADDRESSES, F_GROUPED, F_IDS, F_DATE, F_URLS, F_BAD };

/* Every field of the header block of part (NULL = the message), heap; free
 * with jmap_fields_free(). */
struct field *jmap_fields_of(const struct message *msg, const struct message_part *part,
                             size_t *n_r);
void jmap_fields_free(struct field *f, size_t n);
/* A field's raw value in the parsed forms of RFC 8621 4.1.2 (new references). */
json_t *jmap_hdr_text(const char *raw);
json_t *jmap_hdr_addresses(const char *raw, bool grouped);
json_t *jmap_hdr_form(const char *raw, enum hform f);
/* "header:Name[:form][:all]" over the fields; NULL for a malformed name. */
json_t *jmap_header_prop(struct field *f, size_t n, const char *prop);
/* The "headers" property: every field, raw. */
json_t *jmap_headers_list(struct field *f, size_t n);
/* The value of the last field named name, or NULL. */
const char *jmap_last_field(struct field *f, size_t n, const char *name);
/* That value in form, or JSON null when there is no such field. */
json_t *jmap_header_or_null(struct field *f, size_t n, const char *name, enum hform form);

struct jpart {
	const struct message_part *p;
	char path[PATH_MAX_LEN];
	struct message_part_info info;
	bool multipart;
	struct jpart *kids;
	size_t n_kids;
	json_t *json; /* leaf: every body property */
};

struct walk {
	const struct message *msg;
	const char *blob_prefix;
	unsigned parts;
};

/* Lists of leaves; NULL stands for the algorithm's null list. */
struct plist {
	const struct jpart **v;
	size_t n, cap;
	bool null;
};

/* The tree of parts under p, its leaves' JSON made, named by path. */
void jmap_part_build(struct walk *w, struct jpart *jp, const struct message_part *p,
                     const char *path);
void jmap_part_free(struct jpart *jp);
/* RFC 8621 4.1.4 parseStructure: the leaves into html, text and att. */
void jmap_parse_structure(const struct jpart *parts, size_t n, const char *multi_type, bool in_alt,
                          struct plist *html, struct plist *text, struct plist *att);
/* bodyStructure, and a list of leaves (textBody...), with props (NULL =
 * default). */
json_t *jmap_structure_json(const struct message *msg, const struct jpart *jp, json_t *props);
json_t *jmap_part_list(const struct message *msg, const struct plist *l, json_t *props);
/* bodyValues of the text leaves of l, each cut at max bytes (0 = whole). */
void jmap_body_values_add(const struct message *msg, const struct plist *l, size_t max,
                          json_t *values);

#endif
