/*
 * Local delivery shared by SMTP, LMTP and `roost deliver` (see
 * include/roost/delivery.h).
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include "roost/auth.h"
#include "roost/config.h"
#include "roost/delivery.h"
#include "roost/error.h"
#include "roost/log.h"
#include "roost/metrics.h"
#include "roost/services.h"
#include "roost/storage.h"
#include "roost/xalloc.h"

bool
delivery_domain_is_local(const struct roost_config *cfg, const char *domain)
{
	if (cfg->smtp_domains == NULL)
		return false;
	for (char **d = cfg->smtp_domains; *d != NULL; d++) {
		if (strcasecmp(*d, domain) == 0)
			return true;
	}
	return false;
}

/* Look up local@domain; for a local domain also the bare local part, for
 * users named without a domain ("alice"). */
static int
lookup_user(const struct roost_services *sv, const char *local, size_t local_len,
            const char *domain, bool is_local, char *name_r, size_t namelen)
{
	char tmp[DELIVERY_MAX_USER];
	int n = snprintf(tmp, sizeof(tmp), "%.*s@%s", (int)local_len, local, domain);

	if (n > 0 && (size_t)n < sizeof(tmp) && auth_lookup(sv->auth, tmp, name_r, namelen) == 0)
		return 0;
	if (is_local && local_len < sizeof(tmp)) {
		memcpy(tmp, local, local_len);
		tmp[local_len] = '\0';
		if (auth_lookup(sv->auth, tmp, name_r, namelen) == 0)
			return 0;
	}
	return ROOST_ENOTFOUND;
}

int
delivery_resolve(const struct roost_services *sv, const char *address, struct delivery_rcpt *r)
{
	const struct roost_config *cfg = sv->cfg;
	const char *at = strrchr(address, '@'), *domain, *delim = cfg->recipient_delimiter;
	size_t local_len, cut;
	bool is_local;

	strcpy(r->mailbox, "INBOX");
	r->user[0] = '\0';
	if (strlen(address) >= DELIVERY_MAX_USER)
		return ROOST_EINVAL;
	/* SMTP's path parser lets no control byte through, but `roost deliver`
	 * takes the address as given, and it ends up in the Received header. */
	for (const unsigned char *p = (const unsigned char *)address; *p != '\0'; p++) {
		if (*p < 0x20 || *p == 0x7f)
			return ROOST_EINVAL;
	}
	if (at == NULL) {
		/* A bare name (RCPT TO:<postmaster>, roost deliver -a alice):
		 * a user of that name, or the name at the first local domain. */
		if (auth_lookup(sv->auth, address, r->user, sizeof(r->user)) == 0)
			return 0;
		if (cfg->smtp_domains == NULL || cfg->smtp_domains[0] == NULL)
			return ROOST_ENOTFOUND;
		domain = cfg->smtp_domains[0];
		local_len = strlen(address);
		is_local = true;
	} else {
		domain = at + 1;
		local_len = (size_t)(at - address);
		is_local = delivery_domain_is_local(cfg, domain);
	}
	if (lookup_user(sv, address, local_len, domain, is_local, r->user, sizeof(r->user)) == 0)
		return 0;
	if (delim != NULL && *delim != '\0') {
		cut = strcspn(address, delim);
		if (cut > 0 && cut < local_len &&
		    lookup_user(sv, address, cut, domain, is_local, r->user, sizeof(r->user)) ==
		        0) {
			const char *detail = address + cut + 1;
			size_t detail_len = local_len - cut - 1;
			char folder[DELIVERY_MAX_FOLDER];
			struct mailbox_status st;

			if (detail_len > 0 && detail_len < sizeof(folder)) {
				memcpy(folder, detail, detail_len);
				folder[detail_len] = '\0';
				if (storage_name_valid(folder) &&
				    storage_status(sv->storage, r->user, folder, &st) == 0)
					strcpy(r->mailbox, folder);
			}
			return 0;
		}
	}
	r->user[0] = '\0';
	return is_local ? ROOST_ENOTFOUND : ROOST_EPERM;
}

void
delivery_new_id(char id[DELIVERY_ID_LEN])
{
	static atomic_uint counter;
	unsigned n = atomic_fetch_add(&counter, 1);

	snprintf(id, DELIVERY_ID_LEN, "%08llX%06X%X",
	         (unsigned long long)time(NULL) & 0xffffffffULL, n & 0xffffffu,
	         (unsigned)getpid() & 0xfffffu);
}

/* Copy client text into a header, keeping only what cannot break it. */
static void
append_clean(struct buf *out, const char *s, size_t max, const char *allowed_punct)
{
	size_t n = 0;

	for (const unsigned char *p = (const unsigned char *)s; *p != '\0' && n < max; p++, n++) {
		unsigned char c = *p;

		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		    (c != '\0' && strchr(allowed_punct, c) != NULL))
			buf_append_byte(out, c);
		else
			buf_append_byte(out, '_');
	}
}

int
delivery_trace_headers(const struct roost_config *cfg, const struct delivery_trace *t,
                       struct buf *out)
{
	char date[64];
	time_t now = t->time != 0 ? (time_t)t->time : time(NULL);
	struct tm tm;
	size_t start = out->len;

	gmtime_r(&now, &tm);
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S +0000", &tm);

	/* The sender went through the path parser: no controls, <= 256. */
	buf_printf(out, "Return-Path: <%s>\r\n", t->sender != NULL ? t->sender : "");
	buf_append_str(out, "Received: ");
	if (t->helo != NULL) {
		buf_append_str(out, "from ");
		append_clean(out, t->helo, 100, ".-_:[]");
		buf_printf(out, " ([%s])\r\n\t", t->peer != NULL ? t->peer : "unknown");
	}
	buf_printf(out, "by %s (Roost) with %s",
	           cfg->hostname != NULL ? cfg->hostname : "localhost", t->protocol);
	if (t->tls_info != NULL && t->tls_info[0] != '\0') {
		const char *sp = strchr(t->tls_info, ' ');

		if (sp != NULL)
			buf_printf(out, "\r\n\t(version=%.*s cipher=%s)", (int)(sp - t->tls_info),
			           t->tls_info, sp + 1);
		else
			buf_printf(out, "\r\n\t(version=%s)", t->tls_info);
	}
	buf_printf(out, "\r\n\tid %s", t->id);
	if (t->for_rcpt != NULL)
		buf_printf(out, "\r\n\tfor <%s>", t->for_rcpt);
	buf_printf(out, "; %s\r\n", date);
	if (t->dsn != NULL && t->dsn[0] != '\0') {
		buf_append_str(out, "X-Roost-DSN: ");
		append_clean(out, t->dsn, 900, ";=+-_.@,/ ");
		buf_append_str(out, "\r\n");
	}
	/* buf appends fail only at the maximum; tell the caller once. */
	if (out->max != 0 && out->len + 2 >= out->max) {
		buf_truncate(out, start);
		return ROOST_ETOOBIG;
	}
	return 0;
}

/* Expunge what was stored for the recipients that succeeded. */
static void
roll_back(struct storage *st, struct delivery_target *t, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		struct mailbox *mb = NULL;
		int err;

		if (t[i].result != 0 || t[i].uid == 0)
			continue;
		err = mailbox_open(st, t[i].user, t[i].mailbox, 0, &mb);
		if (err == 0)
			err = mailbox_expunge(mb, &t[i].uid, 1);
		mailbox_close(&mb);
		if (err != 0)
			log_error("event=rollback-failed user=%s mailbox=%s uid=%u error=\"%s\"",
			          LOG_QUOTE(t[i].user), LOG_QUOTE(t[i].mailbox), t[i].uid,
			          roost_strerror(err));
	}
}

int
delivery_store(struct storage *st, const uint8_t *msg, size_t len, struct delivery_rcpt *rcpts,
               size_t n, bool all_or_nothing)
{
	struct msg_input in = {.data = msg, .len = len, .fd = -1};

	return delivery_store_input(st, &in, rcpts, n, all_or_nothing);
}

int
delivery_store_input(struct storage *st, const struct msg_input *inp, struct delivery_rcpt *rcpts,
                     size_t n, bool all_or_nothing)
{
	struct msg_input in = *inp;
	struct delivery_target *t;
	size_t *map, nt = 0;
	int err = 0;

	if (n == 0)
		return 0;
	t = xcalloc(n, sizeof(*t));
	map = xcalloc(n, sizeof(*map));
	/* One copy per distinct (user, mailbox), however often it was named. */
	for (size_t i = 0; i < n; i++) {
		size_t j;

		for (j = 0; j < nt; j++) {
			if (strcmp(t[j].user, rcpts[i].user) == 0 &&
			    strcmp(t[j].mailbox, rcpts[i].mailbox) == 0)
				break;
		}
		if (j == nt) {
			t[nt].user = rcpts[i].user;
			t[nt].mailbox = rcpts[i].mailbox;
			nt++;
		}
		map[i] = j;
	}

	err = storage_deliver(st, &in, t, nt);
	if (err != 0) {
		/* A user never seen before has no INBOX yet, or the detail
		 * folder went away since RCPT: set up and retry those once,
		 * into INBOX. */
		struct delivery_target *retry = xcalloc(nt, sizeof(*retry));
		size_t *back = xcalloc(nt, sizeof(*back));
		size_t nr = 0;

		for (size_t j = 0; j < nt; j++) {
			if (t[j].result != ROOST_ENOTFOUND)
				continue;
			storage_user_init(st, t[j].user);
			retry[nr].user = t[j].user;
			retry[nr].mailbox = "INBOX";
			back[nr++] = j;
		}
		if (nr > 0) {
			storage_deliver(st, &in, retry, nr);
			for (size_t k = 0; k < nr; k++) {
				t[back[k]] = retry[k];
			}
		}
		free(retry);
		free(back);
		err = 0;
		for (size_t j = 0; j < nt; j++) {
			if (t[j].result != 0) {
				err = t[j].result;
				break;
			}
		}
		if (err != 0 && all_or_nothing) {
			roll_back(st, t, nt);
			for (size_t j = 0; j < nt; j++) {
				if (t[j].result == 0)
					t[j].result = err;
			}
		}
	}
	for (size_t i = 0; i < n; i++) {
		const struct delivery_target *d = &t[map[i]];

		if (d->result == 0)
			metrics_deliveries(1);
		rcpts[i].result = d->result;
		rcpts[i].uid = d->result == 0 ? d->uid : 0;
		rcpts[i].uidvalidity = d->uidvalidity;
		if (d->result == 0 && strcmp(d->mailbox, rcpts[i].mailbox) != 0)
			snprintf(rcpts[i].mailbox, sizeof(rcpts[i].mailbox), "%s", d->mailbox);
	}
	free(map);
	free(t);
	return err;
}

/* ---- roost deliver ---- */

static int
exit_for(int err)
{
	switch (err) {
	case 0:
		return EX_OK;
	case ROOST_ENOTFOUND:
	case ROOST_EPERM:
		return EX_NOUSER;
	case ROOST_ETOOBIG:
		return EX_DATAERR;
	default:
		return EX_TEMPFAIL;
	}
}

/* Read stdin into out (LF -> CR LF, a leading mbox "From " line dropped).
 * ROOST_ETOOBIG past max bytes of message. */
static int
read_message(struct buf *out, uint64_t max)
{
	uint8_t chunk[65536];
	uint64_t total = 0;
	bool first_line = true, skipping = false, prev_cr = false;
	size_t got;

	while ((got = fread(chunk, 1, sizeof(chunk), stdin)) > 0) {
		for (size_t i = 0; i < got; i++) {
			uint8_t c = chunk[i];

			if (first_line) {
				/* Decide on the first five bytes whether this is
				 * an mbox "From " separator line. */
				if (i == 0 && got >= 5 && memcmp(chunk, "From ", 5) == 0)
					skipping = true;
				first_line = false;
			}
			if (skipping) {
				if (c == '\n')
					skipping = false;
				continue;
			}
			if (c == '\n' && !prev_cr) {
				if (buf_append_byte(out, '\r') != 0)
					return ROOST_ETOOBIG;
				total++;
			}
			if (buf_append_byte(out, c) != 0)
				return ROOST_ETOOBIG;
			total++;
			prev_cr = c == '\r';
			if (total > max)
				return ROOST_ETOOBIG;
		}
	}
	if (ferror(stdin))
		return ROOST_EIO;
	return 0;
}

static void
deliver_usage(void)
{
	fprintf(stderr, "usage: roost deliver [-f sender] -a recipient [-a recipient...] "
	                "[--config FILE] < message\n");
}

int
delivery_command(const struct roost_services *sv, int argc, char **argv)
{
	const char *sender = "";
	const char **addrs = xcalloc((size_t)argc + 1, sizeof(*addrs));
	struct delivery_rcpt *rcpts = NULL;
	struct buf msg;
	char id[DELIVERY_ID_LEN];
	struct delivery_trace t = {0};
	size_t n = 0, hdr_len;
	uint64_t max;
	int err, rc = EX_OK;

	buf_init(&msg, 0);
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "-f") == 0 && i + 1 < argc) {
			sender = argv[++i];
		} else if (strcmp(argv[i], "-a") == 0 && i + 1 < argc) {
			addrs[n++] = argv[++i];
		} else if (argv[i][0] != '-') {
			addrs[n++] = argv[i];
		} else {
			deliver_usage();
			rc = EX_USAGE;
			goto out;
		}
	}
	if (n == 0) {
		deliver_usage();
		rc = EX_USAGE;
		goto out;
	}
	if (strlen(sender) > 256 || strpbrk(sender, "\r\n<>") != NULL) {
		fprintf(stderr, "roost deliver: bad sender address\n");
		rc = EX_USAGE;
		goto out;
	}
	rcpts = xcalloc(n, sizeof(*rcpts));
	for (size_t i = 0; i < n; i++) {
		err = delivery_resolve(sv, addrs[i], &rcpts[i]);
		if (err != 0) {
			fprintf(stderr, "roost deliver: %s: %s\n", addrs[i],
			        err == ROOST_EPERM ? "not a local address" : "no such user");
			rc = exit_for(err == ROOST_EINVAL ? ROOST_ENOTFOUND : err);
			goto out;
		}
	}

	delivery_new_id(id);
	t.sender = sender;
	t.protocol = "local";
	t.id = id;
	t.for_rcpt = n == 1 ? addrs[0] : NULL;
	delivery_trace_headers(sv->cfg, &t, &msg);
	hdr_len = msg.len;
	/* Storage bounds the whole message, trace headers included. */
	max = sv->cfg->max_message_size > hdr_len ? sv->cfg->max_message_size - hdr_len : 0;
	msg.max = hdr_len + max + 2;
	err = read_message(&msg, max);
	if (err != 0) {
		fprintf(stderr, "roost deliver: %s\n",
		        err == ROOST_ETOOBIG ? "message too big" : "cannot read the message");
		rc = err == ROOST_ETOOBIG ? EX_DATAERR : EX_IOERR;
		goto out;
	}
	err = delivery_store(sv->storage, msg.data, msg.len, rcpts, n, true);
	if (err != 0) {
		log_error("proto=deliver event=failed id=%s from=%s error=\"%s\"", id,
		          LOG_QUOTE(sender), roost_strerror(err));
		fprintf(stderr, "roost deliver: storage: %s\n", roost_strerror(err));
		rc = exit_for(err == ROOST_ENOTFOUND ? ROOST_ETEMP : err);
		goto out;
	}
	for (size_t i = 0; i < n; i++)
		log_info("proto=deliver event=delivered id=%s from=%s to=%s user=%s mailbox=%s "
		         "uid=%u size=%zu",
		         id, LOG_QUOTE(sender), LOG_QUOTE(addrs[i]), LOG_QUOTE(rcpts[i].user),
		         LOG_QUOTE(rcpts[i].mailbox), rcpts[i].uid, msg.len - hdr_len);
out:
	buf_free(&msg);
	free(rcpts);
	free(addrs);
	return rc;
}
