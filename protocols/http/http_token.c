/*
 * Bearer tokens for scripts (`roost token add USER`). The file
 * <data_dir>/tokens holds "sha256-hex user" lines: a stolen copy of it
 * grants nothing, and a presented token is found by its digest.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "roost/buf.h"
#include "roost/error.h"
#include "roost/http.h"
#include "roost/log.h"

#define TOKEN_FILE_MAX (4u << 20)

static void
token_path(const char *data_dir, const char *suffix, char *out, size_t size)
{
	snprintf(out, size, "%s/tokens%s", data_dir, suffix);
}

static void
digest_hex(const char *token, char out[65])
{
	uint8_t md[32];
	unsigned mdlen = 0;

	EVP_Digest(token, strlen(token), md, &mdlen, EVP_sha256(), NULL);
	for (unsigned i = 0; i < 32; i++)
		snprintf(out + 2 * i, 3, "%02x", md[i]);
}

static int
read_file(const char *path, struct buf *out)
{
	char chunk[4096];
	FILE *f = fopen(path, "r");
	size_t n;

	if (f == NULL)
		return errno == ENOENT ? ROOST_ENOTFOUND : ROOST_EIO;
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
		if (buf_append(out, chunk, n) != 0) {
			fclose(f);
			return ROOST_ETOOBIG;
		}
	}
	fclose(f);
	return 0;
}

/* Replace the file with contents: temp file, fsync, rename. */
static int
write_file(const char *data_dir, const struct buf *contents)
{
	char path[4096], tmp[4096];
	int fd;

	token_path(data_dir, "", path, sizeof(path));
	token_path(data_dir, ".tmp", tmp, sizeof(tmp));
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return ROOST_EIO;
	if ((contents->len > 0 &&
	     write(fd, contents->data, contents->len) != (ssize_t)contents->len) ||
	    fsync(fd) < 0) {
		close(fd);
		unlink(tmp);
		return ROOST_EIO;
	}
	close(fd);
	if (rename(tmp, path) < 0) {
		unlink(tmp);
		return ROOST_EIO;
	}
	return 0;
}

/* Serialise edits of the file between processes. */
static int
edit_lock(const char *data_dir)
{
	char path[4096];
	int fd;

	token_path(data_dir, ".lock", path, sizeof(path));
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd >= 0 && flock(fd, LOCK_EX) < 0) {
		close(fd);
		fd = -1;
	}
	return fd;
}

/* Take the edit lock and read the token file into contents (none yet is
 * empty): the lock's fd with *rc_r 0 or the read's error, or -1 with *rc_r
 * ROOST_EIO when the lock cannot be had. */
static int
edit_begin(const char *data_dir, struct buf *contents, int *rc_r)
{
	char path[4096];
	int lock = edit_lock(data_dir);

	if (lock < 0) {
		*rc_r = ROOST_EIO;
		return -1;
	}
	token_path(data_dir, "", path, sizeof(path));
	*rc_r = read_file(path, contents);
	if (*rc_r == ROOST_ENOTFOUND)
		*rc_r = 0;
	return lock;
}

int
http_token_add(const char *data_dir, const char *user, char token_r[HTTP_TOKEN_LEN + 1])
{
	static const char b64url[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	struct buf contents = BUF_INIT(TOKEN_FILE_MAX);
	char hex[65];
	uint8_t rnd[32];
	uint32_t acc = 0;
	int bits = 0, o = 0, lock, rc;

	if (RAND_bytes(rnd, sizeof(rnd)) != 1)
		return ROOST_EIO;
	for (size_t i = 0; i < sizeof(rnd); i++) {
		acc = acc << 8 | rnd[i];
		bits += 8;
		while (bits >= 6) {
			bits -= 6;
			token_r[o++] = b64url[(acc >> bits) & 63];
		}
	}
	if (bits > 0)
		token_r[o++] = b64url[(acc << (6 - bits)) & 63];
	token_r[o] = '\0';
	OPENSSL_cleanse(rnd, sizeof(rnd));
	digest_hex(token_r, hex);

	if ((lock = edit_begin(data_dir, &contents, &rc)) < 0)
		return rc;
	if (rc == 0 && buf_printf(&contents, "%s %s\n", hex, user) != 0)
		rc = ROOST_ETOOBIG;
	if (rc == 0)
		rc = write_file(data_dir, &contents);
	close(lock);
	buf_free(&contents);
	return rc;
}

int
http_token_check(const char *data_dir, const char *token, char *name_r, size_t namelen)
{
	struct buf contents = BUF_INIT(TOKEN_FILE_MAX);
	char path[4096], hex[65];
	int rc = ROOST_EAUTH;

	token_path(data_dir, "", path, sizeof(path));
	if (strlen(token) != HTTP_TOKEN_LEN)
		return ROOST_EAUTH;
	digest_hex(token, hex);
	if (read_file(path, &contents) != 0) {
		buf_free(&contents);
		return ROOST_EAUTH;
	}
	for (char *line = (char *)contents.data; line != NULL && *line != '\0';) {
		char *nl = strchr(line, '\n');

		if (nl != NULL)
			*nl = '\0';
		if (strlen(line) > 65 && line[64] == ' ' && CRYPTO_memcmp(line, hex, 64) == 0 &&
		    strlen(line + 65) < namelen) {
			snprintf(name_r, namelen, "%s", line + 65);
			rc = 0;
			break;
		}
		line = nl != NULL ? nl + 1 : NULL;
	}
	buf_free(&contents);
	return rc;
}

int
http_token_revoke(const char *data_dir, const char *user, unsigned *n_r)
{
	struct buf contents = BUF_INIT(TOKEN_FILE_MAX), kept = BUF_INIT(TOKEN_FILE_MAX);
	unsigned n = 0;
	int lock, rc;

	if ((lock = edit_begin(data_dir, &contents, &rc)) < 0)
		return rc;
	for (char *line = (char *)contents.data; rc == 0 && line != NULL && *line != '\0';) {
		char *nl = strchr(line, '\n');

		if (nl != NULL)
			*nl = '\0';
		if (strlen(line) > 65 && strcasecmp(line + 65, user) == 0)
			n++;
		else
			buf_printf(&kept, "%s\n", line);
		line = nl != NULL ? nl + 1 : NULL;
	}
	if (rc == 0 && n > 0)
		rc = write_file(data_dir, &kept);
	close(lock);
	buf_free(&contents);
	buf_free(&kept);
	*n_r = n;
	return rc;
}
