/*
 * `roost deliver -f sender -a rcpt [-a rcpt...] < message`: the MDA entry
 * point (Postfix/Exim pipe transports). Reads the message from stdin (LF
 * line ends become CR LF, a leading mbox "From " line is dropped) and
 * delivers it through the local delivery service, the path SMTP and LMTP
 * use, all or nothing. Exit codes are sysexits.h, as MTAs expect from an
 * MDA, not enum cli_exit: EX_OK, EX_USAGE, EX_NOUSER for an unknown
 * recipient, EX_TEMPFAIL for storage trouble and for a recipient over
 * quota (the MTA keeps the message and retries, as for 452 4.2.2),
 * EX_CANTCREAT when the message alone is larger than a recipient's quota
 * (it can never be stored: the MTA bounces it, as for 552 5.2.2),
 * EX_DATAERR for a message over max_message_size, EX_CONFIG.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>

#include "roost/aliases.h"
#include "roost/auth.h"
#include "roost/cli.h"
#include "roost/config.h"
#include "roost/delivery.h"
#include "roost/error.h"
#include "roost/log.h"
#include "roost/services.h"
#include "roost/storage.h"
#include "roost/xalloc.h"

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
	case ROOST_EQUOTATOOBIG:
		return EX_CANTCREAT;
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

/* Parse the arguments, read the message, deliver it; a sysexits.h code. */
static int
deliver_message(const struct roost_services *sv, int argc, char **argv)
{
	const char *sender = "";
	const char **addrs = xcalloc((size_t)argc + 1, sizeof(*addrs));
	struct delivery_rcpt *rcpts = NULL;
	const char **rcpt_addr = NULL;
	size_t n_rcpts = 0;
	struct delivery_target *targets = NULL;
	struct msg_input in = {.fd = -1};
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
	for (size_t i = 0; i < n; i++) {
		struct delivery_dest *dests = NULL;
		size_t nd = 0;

		err = delivery_expand(sv, addrs[i], &dests, &nd);
		if (err != 0) {
			fprintf(stderr, "roost deliver: %s: %s\n", addrs[i],
			        err == ROOST_EPERM ? "not a local address" : "no such user");
			rc = exit_for(err == ROOST_EINVAL ? ROOST_ENOTFOUND : err);
			goto out;
		}
		for (size_t j = 0; j < nd; j++) {
			if (dests[j].remote) {
				/* Only the server's queue sends mail on. */
				fprintf(stderr,
				        "roost deliver: %s: the alias forwards to %s in another "
				        "domain; hand such mail to the server (LMTP or SMTP)\n",
				        addrs[i], dests[j].addr);
				free(dests);
				rc = EX_UNAVAILABLE;
				goto out;
			}
			rcpts = xreallocarray(rcpts, n_rcpts + 1, sizeof(*rcpts));
			rcpt_addr = xreallocarray(rcpt_addr, n_rcpts + 1, sizeof(*rcpt_addr));
			rcpts[n_rcpts] = dests[j].d;
			rcpt_addr[n_rcpts++] = addrs[i];
		}
		free(dests);
	}
	targets = xcalloc(n_rcpts, sizeof(*targets));

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
	for (size_t i = 0; i < n_rcpts; i++)
		targets[i] =
		    (struct delivery_target){.user = rcpts[i].user, .mailbox = rcpts[i].mailbox};
	in.data = msg.data;
	in.len = msg.len;
	err = delivery_store(sv, sender, &in, targets, n_rcpts, true);
	if (err != 0) {
		log_error("event=failed proto=deliver id=%s from=%s error=\"%s\"", id,
		          LOG_QUOTE(sender), roost_strerror(err));
		fprintf(stderr, "roost deliver: storage: %s\n", roost_strerror(err));
		rc = exit_for(err == ROOST_ENOTFOUND ? ROOST_ETEMP : err);
		goto out;
	}
	for (size_t i = 0; i < n_rcpts; i++)
		log_info("event=delivered proto=deliver id=%s from=%s to=%s to_user=%s mailbox=%s "
		         "uid=%u size=%zu",
		         id, LOG_QUOTE(sender), LOG_QUOTE(rcpt_addr[i]), LOG_QUOTE(targets[i].user),
		         LOG_QUOTE(targets[i].mailbox), targets[i].uid, msg.len - hdr_len);
out:
	buf_free(&msg);
	free(targets);
	free(rcpts);
	free(rcpt_addr);
	free(addrs);
	return rc;
}
int
cli_deliver(struct cli *cli)
{
	struct roost_config *cfg = NULL;
	struct roost_services sv = {0};
	struct storage *st = NULL;
	struct auth *auth = NULL;
	struct aliases *aliases = NULL;
	char msg[512];
	enum log_level level = LOG_LEVEL_INFO;
	int err, rc;

	if (cli_load_config(cli, &cfg) < 0)
		return EX_CONFIG;
	if (log_level_parse(cfg->log_level, &level) != 0)
		level = LOG_LEVEL_INFO;
	/* An MDA is quiet on success: the MTA shows what it prints. Its
	 * delivery lines go to syslog when that is on, to stderr only with
	 * log_level = debug. */
	if (cfg->log_syslog)
		log_setup(level, false, true);
	else
		log_setup(level == LOG_LEVEL_DEBUG ? level : LOG_LEVEL_WARN, true, false);
	err = auth_open(cfg, &auth);
	if (err != 0) {
		fprintf(stderr, "roost deliver: cannot open the user database: %s\n",
		        roost_strerror(err));
		rc = EX_TEMPFAIL;
		goto out;
	}
	err = storage_open(cfg, &st);
	if (err != 0) {
		fprintf(stderr, "roost deliver: cannot open storage: %s\n", roost_strerror(err));
		rc = EX_TEMPFAIL;
		goto out;
	}
	storage_set_auth(st, auth);
	err = aliases_load(cfg, &aliases, msg, sizeof(msg));
	if (err != 0) {
		fprintf(stderr, "roost deliver: %s\n", msg);
		rc = EX_CONFIG;
		goto out;
	}
	sv.cfg = cfg;
	sv.storage = st;
	sv.auth = auth;
	sv.aliases = aliases;
	rc = deliver_message(&sv, cli->argc, cli->argv);
out:
	aliases_free(&aliases);
	storage_close(&st);
	auth_free(&auth);
	config_free(&cfg);
	return rc;
}
