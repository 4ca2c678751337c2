/*
 * The Maildir backend: the ops table, opening and closing the store, and
 * the paths of users and folders. Layout and locking: maildir.h.
 */

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "roost/config.h"
#include "roost/xalloc.h"

#include "maildir.h"

static int
md_open(const struct roost_config *cfg, struct storage **st_r)
{
	struct md_storage *ms;
	char host[256];
	const char *h = cfg != NULL && cfg->hostname != NULL ? cfg->hostname : NULL;
	const char *data_dir = cfg != NULL && cfg->data_dir != NULL ? cfg->data_dir : "./var";
	struct buf b = BUF_INIT(0);
	size_t len;
	int err;

	if (h == NULL) {
		if (gethostname(host, sizeof(host)) < 0)
			snprintf(host, sizeof(host), "localhost");
		host[sizeof(host) - 1] = '\0';
		h = host;
	}
	ms = xcalloc(1, sizeof(*ms));
	/* '/' and ':' cannot appear in a Maildir name (the spec's escapes) */
	for (; *h != '\0'; h++) {
		if (*h == '/')
			buf_append_str(&b, "\\057");
		else if (*h == ':')
			buf_append_str(&b, "\\072");
		else if ((unsigned char)*h > ' ' && (unsigned char)*h < 127)
			buf_append_byte(&b, (uint8_t)*h);
	}
	if (b.len == 0)
		buf_append_str(&b, "localhost");
	ms->hostname = (char *)buf_steal(&b, &len);
	ms->root = md_path(data_dir, "maildir");
	ms->fsync = cfg != NULL ? cfg->storage_fsync : true;
	ms->retention = cfg != NULL && cfg->expunge_log_retention > 0 ? cfg->expunge_log_retention
	                                                              : 30 * 24 * 3600;
	pthread_mutex_init(&ms->lock, NULL);
	if ((err = md_mkdir(data_dir)) < 0 || (err = md_mkdir(ms->root)) < 0) {
		free(ms->hostname);
		free(ms->root);
		pthread_mutex_destroy(&ms->lock);
		free(ms);
		return err;
	}
	*st_r = &ms->st;
	return 0;
}

static void
md_close(struct storage *st)
{
	struct md_storage *ms;

	if (st == NULL)
		return;
	ms = container_of(st, struct md_storage, st);
	md_watch_stop(ms);
	md_folders_free(ms);
	pthread_mutex_destroy(&ms->lock);
	free(ms->root);
	free(ms->hostname);
	free(ms);
}

char *
md_user_dir(struct md_storage *ms, const char *user)
{
	return md_path(ms->root, user);
}

char *
md_folder_path(struct md_storage *ms, const char *user, const char *name)
{
	char *udir = md_user_dir(ms, user);
	char *enc, *p;

	if (strcmp(name, "INBOX") == 0)
		return udir;
	enc = md_name_encode(name);
	p = md_path(udir, enc);
	free(enc);
	free(udir);
	return p;
}

const struct storage_ops storage_maildir_ops = {
    .name = "maildir",
    .open = md_open,
    .close = md_close,
    .user_init = md_user_init,
    .list = md_list,
    .create = md_create,
    .delete = md_delete,
    .rename = md_rename,
    .subscribe = md_subscribe,
    .status = md_status,
    .set_uids = md_set_uids,
    .deliver = md_deliver,
    .mailbox_open = md_mailbox_open,
    .mailbox_close = md_mailbox_close,
    .mailbox_status = md_mailbox_status,
    .records = md_records,
    .keywords = md_keywords,
    .claim_recent = md_claim_recent,
    .claim_later = md_claim_later,
    .read = md_read,
    .cache_get = md_cache_get_op,
    .cache_set = md_cache_set_op,
    .append = md_append,
    .store = md_store,
    .expunge = md_expunge,
    .meta_get = md_meta_get,
    .meta_update = md_meta_update,
    .copy = md_copy,
    .changes_since = md_changes_since,
    .changes_since_nb = md_changes_since_nb,
    .check = md_check,
    .repair = md_repair,
    .backup = md_backup,
    .quota_get = md_quota_get,
    .quota_recalc = md_quota_recalc,
};
