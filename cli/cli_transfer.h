#ifndef ROOST_CLI_TRANSFER_H
#define ROOST_CLI_TRANSFER_H

/*
 * What `roost import` and `roost export` share (cli/ only): the progress
 * line, the import sink that stores messages through the storage
 * interface without duplicates, and Maildir++ folder names.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "roost/buf.h"

struct storage;

/* Progress: a bar redrawn on stdout when it is a terminal (messages, MB,
 * rate, ETA), nothing until the end otherwise. Totals may grow as sources
 * are discovered. */
struct progress {
	bool tty;
	const char *what; /* "import", "export" */
	uint64_t total_msgs, total_bytes;
	uint64_t done_msgs, done_bytes;
	struct timespec start, last;
};

void progress_start(struct progress *p, const char *what);
void progress_total(struct progress *p, uint64_t msgs, uint64_t bytes);
/* One message of bytes done (stored, skipped or failed). */
void progress_step(struct progress *p, uint64_t bytes);
/* Clear the bar; seconds since the start. */
double progress_finish(struct progress *p);

/* One message to import; borrowed for the call. */
struct import_msg {
	const uint8_t *data;
	size_t len;
	uint32_t flags;
	const char *const *keywords;
	size_t n_keywords;
	int64_t date;
	uint32_t src_uid; /* the source's UID, 0 when it has none */
};

struct import_fp;

/* The import into one user. */
struct import_ctx {
	struct storage *st;
	const char *user;
	struct progress prog;
	uint64_t added, skipped, failed, bytes_added;
	size_t mailboxes;
};

/*
 * Importing into one mailbox. A source with UIDs (Maildir with its
 * dovecot-uidlist, an IMAP folder) gives its UIDVALIDITY: when the target
 * mailbox never held a message it takes that UIDVALIDITY, and then (and on
 * every later run, as long as the two still agree) each message keeps its
 * UID, and a UID the target has or had is skipped -- a resumed or repeated
 * import copies only what is new. Otherwise a message is skipped when the
 * target already holds one of the same size, internal date and contents
 * (counted: two identical messages in the source give two in the target).
 */
struct import_box {
	struct import_ctx *ctx;
	char *name;
	bool by_uid;
	uint32_t uidnext; /* the target's, as this import moved it */
	uint32_t *uids;   /* the target's UIDs at the start, ascending */
	size_t n_uids;
	struct import_fp *fps; /* the target's messages' fingerprints, sorted */
	size_t n_fps;
	bool fps_loaded;
};

/* Create name when absent (parents too) and look at what it holds. */
int import_box_begin(struct import_ctx *c, const char *name, uint32_t src_uidvalidity,
                     struct import_box *b);
/* True when a message of that source UID need not be fetched at all. */
bool import_box_has_uid(const struct import_box *b, uint32_t src_uid);
/* Store m unless it is there already: 0 stored, 1 skipped, or an error
 * (counted as failed and reported on stderr by the caller). */
int import_box_add(struct import_box *b, const struct import_msg *m);
void import_box_end(struct import_box *b);

struct roost_config;
/* The user as the passwd file spells it into name_r; ROOST_ENOTFOUND for
 * a user the passwd file does not know. */
int cli_transfer_user(const struct roost_config *cfg, const char *user, char *name_r, size_t len);

/* Import from a running IMAP server (cli_import_imap.c): url is
 * imap[s]://user@host[:port]; the password is the first line of
 * password_file, or of stdin when NULL. Folders go under prefix (NULL:
 * as they are). Failures are reported on stderr. */
/* --insecure: no certificate check. */
extern bool import_imap_insecure;
int import_imap(struct import_ctx *c, const char *url, const char *prefix,
                const char *password_file);

/* Maildir++ folder names: ".Work.Sub" <-> "Work/Sub" (modified UTF-7,
 * '.' in a name as "%2e", '%' as "%25", as Roost's Maildir writes them). */
int maildir_name_decode(const char *dirname, struct buf *out);
int maildir_name_encode(const char *name, struct buf *out);

/* Maildir flag letters (name ":2,<letters>") to and from enum msg_flag;
 * keyword letters a-z index a dovecot-keywords table. */
uint32_t maildir_letters_flags(const char *info, uint64_t *kwbits_r);
void maildir_flags_letters(uint32_t flags, uint64_t kwbits, char *out /* >= 32 */);

#endif
