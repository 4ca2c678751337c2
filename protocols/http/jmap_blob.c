/*
 * Blobs (RFC 8620 6): uploads are spooled to a file as their pieces
 * arrive (the body is never held in memory) and named by their SHA-256,
 * under <data_dir>/blobs/<accountId>/. Downloads of a message stream it
 * from storage in steps; a part is decoded (bounded by the message size)
 * and an upload is read back (bounded by the upload limit).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "roost/config.h"
#include "roost/conn.h"
#include "roost/error.h"
#include "roost/log.h"
#include "roost/message.h"
#include "roost/services.h"
#include "roost/utf8.h"
#include "roost/xalloc.h"

#include "jmap_impl.h"

static void
account_dir(struct http_session *s, char *out, size_t size)
{
	snprintf(out, size, "%s/blobs/%s", s->svc->cfg->data_dir, s->account);
}

static int
ensure_dir(struct http_session *s)
{
	char dir[4096];

	snprintf(dir, sizeof(dir), "%s/blobs", s->svc->cfg->data_dir);
	if (mkdir(dir, 0700) != 0 && errno != EEXIST)
		return ROOST_EIO;
	account_dir(s, dir, sizeof(dir));
	if (mkdir(dir, 0700) != 0 && errno != EEXIST)
		return ROOST_EIO;
	return 0;
}

/* The account id in "/jmap/upload/<account>/" or a download path. */
static bool
path_account(struct http_session *s, const char *rest, const char **after_r)
{
	size_t n = strlen(s->account);

	if (strncmp(rest, s->account, n) != 0 || (rest[n] != '/' && rest[n] != '\0'))
		return false;
	*after_r = rest + n + (rest[n] == '/');
	return true;
}

/* The upload no longer runs (maxConcurrentUpload). */
static void
upload_uncount(struct http_session *s)
{
	if (s->upload_counted)
		jmap_limit_leave(s->user, JMAP_LIMIT_UPLOADS);
	s->upload_counted = false;
}

int
jmap_upload_begin(struct http_session *s)
{
	const char *after;
	char path[4096];

	if (!path_account(s, s->req.path + strlen("/jmap/upload/"), &after) || *after != '\0') {
		http_respond_problem(s, 404, "about:blank", "No such account.");
		return ROOST_ENOTFOUND;
	}
	if (!jmap_limit_enter(s->user, JMAP_LIMIT_UPLOADS)) {
		jmap_limit_problem(s, "maxConcurrentUpload");
		return ROOST_EINUSE;
	}
	s->upload_counted = true;
	if (ensure_dir(s) != 0) {
		upload_uncount(s);
		http_respond_problem(s, 500, "about:blank", "The upload cannot be stored.");
		return ROOST_EIO;
	}
	account_dir(s, path, sizeof(path));
	strncat(path, "/tmp.XXXXXX", sizeof(path) - strlen(path) - 1);
	s->upload_fd = mkostemp(path, O_CLOEXEC);
	if (s->upload_fd < 0) {
		upload_uncount(s);
		http_respond_problem(s, 500, "about:blank", "The upload cannot be stored.");
		return ROOST_EIO;
	}
	s->upload_path = xstrdup(path);
	s->upload_hash = EVP_MD_CTX_new();
	EVP_DigestInit_ex(s->upload_hash, EVP_sha256(), NULL);
	s->upload_len = 0;
	return 0;
}

int
jmap_upload_piece(struct http_session *s, const uint8_t *p, size_t len)
{
	size_t off = 0;

	while (off < len) {
		ssize_t n = write(s->upload_fd, p + off, len - off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			conn_log(s->c, LOG_LEVEL_ERROR, "event=upload_write error=\"%s\"",
			         strerror(errno));
			return ROOST_EIO;
		}
		off += (size_t)n;
	}
	EVP_DigestUpdate(s->upload_hash, p, len);
	s->upload_len += len;
	return 0;
}

void
jmap_upload_abort(struct http_session *s)
{
	upload_uncount(s);
	if (s->upload_fd >= 0)
		close(s->upload_fd);
	s->upload_fd = -1;
	if (s->upload_path != NULL)
		unlink(s->upload_path);
	free(s->upload_path);
	s->upload_path = NULL;
	EVP_MD_CTX_free(s->upload_hash);
	s->upload_hash = NULL;
}

void
jmap_upload_finish(struct http_session *s)
{
	const char *ctype = http_request_field(&s->req, "Content-Type");
	uint8_t md[32];
	unsigned mdlen = 0;
	char id[48], dir[4096], final[4200];
	json_t *o;
	char *text;

	upload_uncount(s);
	EVP_DigestFinal_ex(s->upload_hash, md, &mdlen);
	id[0] = 'U';
	for (int i = 0; i < 20; i++)
		snprintf(id + 1 + 2 * i, 3, "%02x", md[i]);
	account_dir(s, dir, sizeof(dir));
	snprintf(final, sizeof(final), "%s/%s", dir, id);
	if (close(s->upload_fd) != 0 || rename(s->upload_path, final) != 0) {
		s->upload_fd = -1;
		jmap_upload_abort(s);
		http_respond_problem(s, 500, "about:blank", "The upload cannot be stored.");
		return;
	}
	s->upload_fd = -1;
	free(s->upload_path);
	s->upload_path = NULL;
	EVP_MD_CTX_free(s->upload_hash);
	s->upload_hash = NULL;
	s->upload = false;
	o = json_pack("{sssssssI}", "accountId", s->account, "blobId", id, "type",
	              ctype != NULL ? ctype : "application/octet-stream", "size",
	              (json_int_t)s->upload_len);
	if (o == NULL)
		o = json_pack("{sssssssI}", "accountId", s->account, "blobId", id, "type",
		              "application/octet-stream", "size", (json_int_t)s->upload_len);
	text = json_dumps(o, JSON_COMPACT);
	http_respond(s, 201, "application/json", text, strlen(text), NULL);
	free(text);
	json_decref(o);
}

/* ---- reading blobs back ---- */

static bool
valid_upload_id(const char *id)
{
	if (strlen(id) != 41 || id[0] != 'U')
		return false;
	for (int i = 1; i < 41; i++) {
		if (!((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'f')))
			return false;
	}
	return true;
}

static int
read_upload(struct http_session *s, const char *id, struct buf *out)
{
	char dir[4096], path[4200], chunk[16384];
	ssize_t n;
	int fd;

	if (!valid_upload_id(id))
		return ROOST_ENOTFOUND;
	account_dir(s, dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/%s", dir, id);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return ROOST_ENOTFOUND;
	while ((n = read(fd, chunk, sizeof(chunk))) > 0) {
		if (buf_append(out, chunk, (size_t)n) != 0) {
			close(fd);
			return ROOST_ETOOBIG;
		}
	}
	close(fd);
	return n < 0 ? ROOST_EIO : 0;
}

/* "P" + 32 hex + "_" + part path with "_" for "." */
static bool
split_part_id(const char *id, char email_id[JMAP_ID_LEN + 1], char part[64])
{
	size_t n = strlen(id);

	if (n < JMAP_ID_LEN + 2 || n - JMAP_ID_LEN - 1 >= 64 || id[0] != 'P' ||
	    id[JMAP_ID_LEN] != '_')
		return false;
	memcpy(email_id, id, JMAP_ID_LEN);
	email_id[0] = 'E';
	email_id[JMAP_ID_LEN] = '\0';
	snprintf(part, 64, "%s", id + JMAP_ID_LEN + 1);
	for (char *p = part; *p != '\0'; p++) {
		if (*p == '_')
			*p = '.';
		else if (*p < '0' || *p > '9')
			return false;
	}
	return true;
}

int
jmap_blob_fetch(struct jmap_req *r, const char *id, struct buf *out)
{
	char eid[JMAP_ID_LEN + 1], part[64];
	const struct jmap_mbox *m;
	struct mailbox *mb = NULL;
	struct msg_view v = {0};
	uint32_t uid;
	int rc;

	if (id[0] == 'U')
		return read_upload(r->s, id, out);
	if (id[0] == 'B') {
		if (strlen(id) != JMAP_ID_LEN)
			return ROOST_ENOTFOUND;
		memcpy(eid, id, sizeof(eid));
		eid[0] = 'E';
		part[0] = '\0';
	} else if (!split_part_id(id, eid, part)) {
		return ROOST_ENOTFOUND;
	}
	if (!jmap_email_parse(r, 'E', eid, &m, &uid))
		return ROOST_ENOTFOUND;
	if ((rc = mailbox_open(r->store, r->user, m->name, MAILBOX_READONLY, &mb)) != 0)
		return rc;
	rc = mailbox_read(mb, uid, &v);
	if (rc == 0 && part[0] == '\0') {
		rc = buf_append(out, v.data, v.len);
	} else if (rc == 0) {
		struct message *msg;
		const struct message_part *p;

		rc = message_parse(v.data, v.len, NULL, &msg);
		if (rc == 0) {
			p = jmap_msg_find_part(msg, part);
			rc = p != NULL ? message_part_decode(msg, p, out) : ROOST_ENOTFOUND;
			message_free(&msg);
		}
	}
	msg_view_release(&v);
	mailbox_close(&mb);
	return rc;
}

/* Does the account have blob id? Read as jmap_blob_fetch() would, without
 * copying the bytes. */
static bool
blob_exists(struct jmap_req *r, const char *id)
{
	char eid[JMAP_ID_LEN + 1], part[64], dir[4096], path[4200];
	const struct jmap_mbox *m;
	struct mailbox *mb = NULL;
	struct msg_view v = {0};
	struct stat sb;
	uint32_t uid;
	bool found = false;

	if (id[0] == 'U') {
		if (!valid_upload_id(id))
			return false;
		account_dir(r->s, dir, sizeof(dir));
		snprintf(path, sizeof(path), "%s/%s", dir, id);
		return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
	}
	if (id[0] == 'B') {
		if (strlen(id) != JMAP_ID_LEN)
			return false;
		memcpy(eid, id, sizeof(eid));
		eid[0] = 'E';
		return jmap_email_parse(r, 'E', eid, &m, &uid);
	}
	if (!split_part_id(id, eid, part) || !jmap_email_parse(r, 'E', eid, &m, &uid))
		return false;
	if (mailbox_open(r->store, r->user, m->name, MAILBOX_READONLY, &mb) != 0)
		return false;
	if (mailbox_read(mb, uid, &v) == 0) {
		struct message *msg;

		if (message_parse(v.data, v.len, NULL, &msg) == 0) {
			found = jmap_msg_find_part(msg, part) != NULL;
			message_free(&msg);
		}
	}
	msg_view_release(&v);
	mailbox_close(&mb);
	return found;
}

/* Keep data as an upload of the user (named by its SHA-256, as
 * jmap_upload_finish() names one) and its id into id. 0 or an error. */
static int
store_upload(struct http_session *s, const struct buf *data, char id[48])
{
	char dir[4096], tmp[4200], final[4200];
	uint8_t md[32];
	unsigned mdlen = 0;
	size_t off = 0;
	int fd;

	if (ensure_dir(s) != 0)
		return ROOST_EIO;
	EVP_Digest(data->data != NULL ? data->data : (const uint8_t *)"", data->len, md, &mdlen,
	           EVP_sha256(), NULL);
	id[0] = 'U';
	for (int i = 0; i < 20; i++)
		snprintf(id + 1 + 2 * i, 3, "%02x", md[i]);
	account_dir(s, dir, sizeof(dir));
	snprintf(final, sizeof(final), "%s/%s", dir, id);
	snprintf(tmp, sizeof(tmp), "%s/tmp.XXXXXX", dir);
	if ((fd = mkostemp(tmp, O_CLOEXEC)) < 0)
		return ROOST_EIO;
	while (off < data->len) {
		ssize_t n = write(fd, data->data + off, data->len - off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		off += (size_t)n;
	}
	if (close(fd) != 0 || off != data->len || rename(tmp, final) != 0) {
		unlink(tmp);
		return ROOST_EIO;
	}
	return 0;
}

/*
 * Blob/copy (RFC 8620 6.3). A blob of an account is already in it:
 * copying within one names the same blob, once it is found. From another
 * account of the user (a shared one, or the user's own into a shared one)
 * the blob's bytes are read there (bounded by the message size) and kept
 * as an upload of the user, which every account of the user reads: the
 * copy's id is that upload's. From an account the user does not have:
 * fromAccountNotFound.
 */
void
jmap_blob_copy(struct jmap_req *r, json_t *args, const char *tag)
{
	const char *from = json_string_value(json_object_get(args, "fromAccountId"));
	json_t *ids, *copied, *not_copied, *v;
	bool other;
	char to[24];
	size_t i;

	if (!jmap_check_account(r, args, tag))
		return;
	snprintf(to, sizeof(to), "%s", r->account);
	if (from == NULL || !jmap_account_select(r, from)) {
		jmap_error(r, "fromAccountNotFound", NULL, tag);
		return;
	}
	other = strcmp(from, to) != 0;
	if (!jmap_check_id_list(r, args, "blobIds", JMAP_MAX_OBJECTS_SET, JMAP_IDS_REQUIRED, tag,
	                        &ids)) {
		(void)jmap_account_select(r, to);
		return;
	}
	copied = json_object();
	not_copied = json_object();
	json_array_foreach(ids, i, v)
	{
		const char *id = json_string_value(v);
		struct buf data = BUF_INIT(r->s->svc->cfg->max_message_size);
		char nid[48];

		if (!other || id[0] == 'U') {
			/* the same account, or the user's own upload, which
			 * every account of the user reads */
			if (blob_exists(r, id))
				json_object_set(copied, id, v);
			else
				json_object_set_new(not_copied, id,
				                    jmap_set_error("blobNotFound", NULL));
		} else if (jmap_blob_fetch(r, id, &data) != 0) {
			json_object_set_new(not_copied, id, jmap_set_error("blobNotFound", NULL));
		} else if (store_upload(r->s, &data, nid) != 0) {
			json_object_set_new(not_copied, id, jmap_set_error("serverFail", NULL));
		} else {
			json_object_set_new(copied, id, json_string(nid));
		}
		buf_free(&data);
	}
	(void)jmap_account_select(r, to);
	jmap_reply(r, "Blob/copy",
	           json_pack("{sssssoso}", "fromAccountId", from, "accountId", r->account, "copied",
	                     json_object_size(copied) > 0 ? copied : json_null(), "notCopied",
	                     json_object_size(not_copied) > 0 ? not_copied : json_null()),
	           tag);
	if (json_object_size(copied) == 0)
		json_decref(copied);
	if (json_object_size(not_copied) == 0)
		json_decref(not_copied);
}

/* A media type safe to echo: "type/subtype" of token characters. */
static bool
safe_type(const char *t)
{
	const char *slash = strchr(t, '/');

	if (slash == NULL || slash == t || slash[1] == '\0' || strlen(t) > 100)
		return false;
	for (const char *p = t; *p != '\0'; p++) {
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9') || strchr("/+-.!#$&^_", *p) != NULL))
			return false;
	}
	return true;
}

static void
download_headers(const char *type, const char *name, struct buf *h)
{
	buf_append_str(h, "Content-Disposition: attachment");
	if (name[0] != '\0') {
		buf_append_str(h, "; filename*=UTF-8''");
		for (const unsigned char *p = (const unsigned char *)name; *p != '\0'; p++) {
			if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
			    (*p >= '0' && *p <= '9') || strchr("-._~", *p) != NULL)
				buf_append_byte(h, *p);
			else
				buf_printf(h, "%%%02X", *p);
		}
	}
	/* A blob is the sender's content: never run as this site's page. */
	buf_append_str(h, "\r\nContent-Security-Policy: sandbox; default-src 'none'\r\n"
	                  "X-Content-Type-Options: nosniff\r\n"
	                  "Cache-Control: private, max-age=604800, immutable\r\n");
	(void)type;
}

/* The account of a download path: the user's own or one shared with the
 * user (its messages, read as the user, which storage checks). */
static bool
download_account(struct jmap_req *r, const char *rest, const char **after_r)
{
	const char *slash = strchr(rest, '/');
	char id[24];

	if (slash == NULL || (size_t)(slash - rest) >= sizeof(id))
		return false;
	memcpy(id, rest, (size_t)(slash - rest));
	id[slash - rest] = '\0';
	if (!jmap_account_select(r, id))
		return false;
	*after_r = slash + 1;
	return true;
}

void
jmap_download(struct http_session *s)
{
	const char *rest = s->req.path + strlen("/jmap/download/"), *after, *slash;
	struct buf accept = BUF_INIT(256), name = BUF_INIT(1024), h = BUF_INIT(0);
	struct buf data = BUF_INIT(s->svc->cfg->max_message_size);
	char blob[128];
	const char *type = "application/octet-stream";
	struct jmap_req r;

	memset(&r, 0, sizeof(r));
	r.s = s;
	r.store = s->svc->storage;
	r.user = s->user;
	r.account = s->account;
	if (!download_account(&r, rest, &after) || (slash = strchr(after, '/')) == NULL ||
	    (size_t)(slash - after) >= sizeof(blob) ||
	    http_url_decode(slash + 1, strlen(slash + 1), &name) != 0) {
		http_respond_problem(s, 404, "about:blank", "No such blob.");
		goto out;
	}
	memcpy(blob, after, (size_t)(slash - after));
	blob[slash - after] = '\0';
	if (http_query_param(s->req.query, "accept", &accept) == 0 && accept.len > 0 &&
	    safe_type((const char *)accept.data))
		type = (const char *)accept.data;
	download_headers(type, name.data ? (const char *)name.data : "", &h);
	if (blob[0] == 'B' && strlen(blob) == JMAP_ID_LEN) {
		/* the raw message: streamed from storage in steps */
		const struct jmap_mbox *m;
		struct mailbox *mb = NULL;
		struct msg_view v;
		uint32_t uid;
		size_t len;

		blob[0] = 'E';
		if (!jmap_email_parse(&r, 'E', blob, &m, &uid) ||
		    mailbox_open(r.store, r.user, m->name, MAILBOX_READONLY, &mb) != 0 ||
		    mailbox_read(mb, uid, &v) != 0) {
			mailbox_close(&mb);
			http_respond_problem(s, 404, "about:blank", "No such blob.");
			goto out;
		}
		len = v.len;
		msg_view_release(&v);
		http_respond_head(s, 200, type, (int64_t)len, (const char *)h.data);
		http_stream_message(s, mb, uid, 0, len);
		goto out;
	}
	if (jmap_blob_fetch(&r, blob, &data) != 0) {
		http_respond_problem(s, 404, "about:blank", "No such blob.");
		goto out;
	}
	http_respond(s, 200, type, data.data, data.len, (const char *)h.data);
out:
	jmap_mailboxes_reset(&r);
	jmap_accounts_reset(&r);
	buf_free(&accept);
	buf_free(&name);
	buf_free(&h);
	buf_free(&data);
}

/* ---- Blob/get (RFC 9404 4.2) ---- */

static bool
blob_prop_known(const char *p)
{
	return strcmp(p, "data") == 0 || strcmp(p, "data:asText") == 0 ||
	       strcmp(p, "data:asBase64") == 0 || strcmp(p, "size") == 0 ||
	       strcmp(p, "digest:sha") == 0 || strcmp(p, "digest:sha-256") == 0;
}

static json_t *
base64_of(const uint8_t *p, size_t n)
{
	char *enc = xmalloc(4 * ((n + 2) / 3) + 1);
	json_t *s;

	EVP_EncodeBlock((unsigned char *)enc, p, (int)n);
	s = json_string(enc);
	free(enc);
	return s;
}

static json_t *
digest_of(const EVP_MD *md, const uint8_t *p, size_t n)
{
	unsigned char d[EVP_MAX_MD_SIZE];
	unsigned int dn = 0;

	if (EVP_Digest(p, n, d, &dn, md, NULL) != 1)
		return json_null();
	return base64_of(d, dn);
}

/* Is the optional argument name absent, null or an UnsignedInt (into
 * *v_r, *has_r)? */
static bool
uint_arg(json_t *args, const char *name, bool *has_r, uint64_t *v_r)
{
	json_t *v = json_object_get(args, name);

	*has_r = false;
	if (v == NULL || json_is_null(v))
		return true;
	if (!json_is_integer(v) || json_integer_value(v) < 0)
		return false;
	*has_r = true;
	*v_r = (uint64_t)json_integer_value(v);
	return true;
}

/*
 * Blob/get: the bytes of blobs (whole or the range offset/length) as
 * text or base64, their size and digests. Each blob is read whole (it is
 * bounded by the message size, as uploads are); the data returned by one
 * call is bounded by the message size as well, past which the call is
 * requestTooLarge (ask for fewer blobs or a range).
 */
void
jmap_blob_get(struct jmap_req *r, json_t *args, const char *tag)
{
	json_t *ids, *props = json_object_get(args, "properties");
	json_t *list, *not_found, *seen, *v, *dflt = NULL;
	uint64_t off = 0, len = 0, budget = r->s->svc->cfg->max_message_size;
	bool has_off, has_len;
	size_t i;

	if (!jmap_check_account(r, args, tag) ||
	    !jmap_check_id_list(r, args, "ids", JMAP_MAX_OBJECTS_GET, JMAP_IDS_REQUIRED, tag, &ids))
		return;
	if ((props != NULL && !json_is_null(props) && !json_is_array(props)) ||
	    !uint_arg(args, "offset", &has_off, &off) ||
	    !uint_arg(args, "length", &has_len, &len)) {
		jmap_error(r, "invalidArguments", "properties, offset or length", tag);
		return;
	}
	if (props == NULL || json_is_null(props))
		props = dflt = json_pack("[ss]", "data", "size");
	json_array_foreach(props, i, v)
	{
		if (!json_is_string(v) || !blob_prop_known(json_string_value(v))) {
			json_decref(dflt);
			jmap_error(r, "invalidArguments", "unknown property", tag);
			return;
		}
	}
	list = json_array();
	not_found = json_array();
	seen = json_object();
	json_array_foreach(ids, i, v)
	{
		const char *id = jmap_resolve_id(r, json_string_value(v));
		struct buf data = BUF_INIT(r->s->svc->cfg->max_message_size + 1);
		json_t *o, *p;
		size_t start, end, n, k;
		bool text_ok;

		if (jmap_id_repeat(seen, json_string_value(v)))
			continue;
		if (id == NULL || id[0] == '\0' || jmap_blob_fetch(r, id, &data) != 0) {
			json_array_append(not_found, v);
			buf_free(&data);
			continue;
		}
		start = off < data.len ? (size_t)off : data.len;
		end = has_len && len < data.len - start ? start + (size_t)len : data.len;
		n = end - start;
		if (n > budget) {
			buf_free(&data);
			json_decref(list);
			json_decref(not_found);
			json_decref(seen);
			json_decref(dflt);
			jmap_error(r, "requestTooLarge", "more data than one response holds", tag);
			return;
		}
		o = json_pack("{ss}", "id", json_string_value(v));
		text_ok = utf8_valid(data.data + start, n);
		json_array_foreach(props, k, p)
		{
			const char *name = json_string_value(p);
			bool text = strcmp(name, "data:asText") == 0 ||
			            (strcmp(name, "data") == 0 && text_ok);

			if (strcmp(name, "size") == 0) {
				json_object_set_new(o, name, json_integer((json_int_t)data.len));
			} else if (text) {
				budget -= n;
				json_object_set_new(
				    o, "data:asText",
				    text_ok ? json_stringn((const char *)data.data + start, n)
				            : json_null());
				if (!text_ok)
					json_object_set_new(o, "isEncodingProblem", json_true());
			} else if (strcmp(name, "data:asBase64") == 0 ||
			           strcmp(name, "data") == 0) {
				budget -= n;
				json_object_set_new(o, "data:asBase64",
				                    base64_of(data.data + start, n));
			} else if (strcmp(name, "digest:sha") == 0) {
				json_object_set_new(o, name,
				                    digest_of(EVP_sha1(), data.data + start, n));
			} else {
				json_object_set_new(o, name,
				                    digest_of(EVP_sha256(), data.data + start, n));
			}
		}
		if ((has_off && off > data.len) || (has_len && off + len > data.len))
			json_object_set_new(o, "isTruncated", json_true());
		json_array_append_new(list, o);
		buf_free(&data);
	}
	json_decref(seen);
	json_decref(dflt);
	jmap_reply(
	    r, "Blob/get",
	    json_pack("{sssoso}", "accountId", r->account, "list", list, "notFound", not_found),
	    tag);
}
