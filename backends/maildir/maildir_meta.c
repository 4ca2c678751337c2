/*
 * Maildir metadata (RFC 5464 entries, the wrapper's record): a file in the
 * folder's directory, roost-metadata (INBOX's is the user's directory),
 * and roost-server-metadata in the user's directory for the server's
 * entries. A rename moves the directory and the file with it, a delete
 * removes both. Other Maildir tools ignore files they do not know.
 * Changes are made under the user's lock (the one mailbox creation and
 * deletion take), written to a temporary file, synced and renamed.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "roost/error.h"
#include "roost/log.h"
#include "roost/xalloc.h"

#include "maildir.h"

#define META_FILE "roost-metadata"
#define SERVER_META_FILE "roost-server-metadata"
/* The record is bounded by the wrapper's limits; a file past this is not ours. */
#define META_MAX (STORAGE_METADATA_MAX_TOTAL + (STORAGE_METADATA_MAX_ENTRIES + 1) * 8)

/* The directory and file name of the record. */
static char *
meta_dir(struct md_storage *ms, const char *user, const char *mailbox, const char **file_r)
{
	*file_r = mailbox[0] == '\0' ? SERVER_META_FILE : META_FILE;
	return mailbox[0] == '\0' ? md_user_dir(ms, user) : md_folder_path(ms, user, mailbox);
}

static int
meta_read(const char *dir, const char *file, char **data_r, size_t *len_r)
{
	char *path = md_path(dir, file);
	int err = md_read_file(path, META_MAX, data_r, len_r);

	free(path);
	return err;
}

int
md_meta_get(struct storage *st, const char *user, const char *mailbox, struct buf *out)
{
	struct md_storage *ms = container_of(st, struct md_storage, st);
	const char *file;
	char *dir = meta_dir(ms, user, mailbox, &file), *data = NULL;
	size_t len = 0;
	int err = meta_read(dir, file, &data, &len);

	if (err == 0)
		buf_append(out, data, len);
	free(data);
	free(dir);
	return err;
}

int
md_meta_update(struct storage *st, const char *user, const char *mailbox,
               int (*fn)(const uint8_t *, size_t, struct buf *, void *), void *arg)
{
	struct md_storage *ms = container_of(st, struct md_storage, st);
	struct buf out = BUF_INIT(0);
	const char *file;
	char *dir = NULL, *data = NULL;
	size_t len = 0;
	int fd = -1, err;

	if ((err = md_user_lock(ms, user, &fd)) < 0)
		return err;
	dir = meta_dir(ms, user, mailbox, &file);
	err = meta_read(dir, file, &data, &len);
	if (err == ROOST_ENOTFOUND) {
		err = 0;
		free(data);
		data = NULL;
	}
	if (err == 0)
		err = fn((const uint8_t *)data, len, &out, arg);
	if (err == 0 && out.len > 0) {
		err = md_write_file(ms, dir, file, out.data, out.len, ms->fsync);
	} else if (err == 0 && data != NULL) {
		char *path = md_path(dir, file);

		if (unlink(path) < 0 && errno != ENOENT) {
			log_error(
			    "event=storage_error backend=maildir op=unlink path=%s error=\"%s\"",
			    LOG_QUOTE(path), strerror(errno));
			err = ROOST_EIO;
		} else if (ms->fsync) {
			md_fsync_dir(dir);
		}
		free(path);
	}
	md_user_unlock(fd);
	buf_free(&out);
	free(data);
	free(dir);
	return err;
}
