/*
 * Test helper: store messages straight into a user's mailbox through the
 * storage API, for integration tests that need a maildrop before (or
 * without) SMTP delivery.
 *
 *   roost-fill [-n] [-F] [-m MAILBOX] CONFIG USER COUNT < message
 *
 * The message on stdin is stored COUNT times. -n puts "X-Seq: <i>" (i from
 * 1) as the first header line of each copy; -F turns fsync off for the
 * fill (fast, for big maildrops). Prints "UIDVALIDITY UID" of the last
 * message stored.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "roost/config.h"
#include "roost/error.h"
#include "roost/log.h"
#include "roost/storage.h"
#include "roost/xalloc.h"

static uint8_t *
read_all(FILE *f, size_t *len_r)
{
	size_t cap = 1 << 16, len = 0, n;
	uint8_t *p = xmalloc(cap);

	while ((n = fread(p + len, 1, cap - len, f)) > 0) {
		len += n;
		if (len == cap) {
			cap *= 2;
			p = xrealloc(p, cap);
		}
	}
	*len_r = len;
	return p;
}

int
main(int argc, char **argv)
{
	const char *mailbox = "INBOX";
	bool number = false, nofsync = false;
	struct roost_config *cfg;
	struct storage *st = NULL;
	char err[512];
	uint8_t *msg, *copy;
	size_t len;
	unsigned long count;
	uint32_t uidv = 0, uid = 0;
	int opt, r;

	while ((opt = getopt(argc, argv, "nFm:")) != -1) {
		switch (opt) {
		case 'n':
			number = true;
			break;
		case 'F':
			nofsync = true;
			break;
		case 'm':
			mailbox = optarg;
			break;
		default:
			goto usage;
		}
	}
	if (argc - optind != 3)
		goto usage;
	count = strtoul(argv[optind + 2], NULL, 10);
	log_setup(LOG_LEVEL_WARN, true, false);
	if (config_load(argv[optind], &cfg, err, sizeof(err)) != 0) {
		fprintf(stderr, "roost-fill: %s\n", err);
		return 1;
	}
	if (nofsync)
		cfg->storage_fsync = false;
	msg = read_all(stdin, &len);
	copy = xmalloc(len + 64);
	r = storage_open(cfg, &st);
	if (r == 0)
		r = storage_user_init(st, argv[optind + 1]);
	for (unsigned long i = 1; r == 0 && i <= count; i++) {
		struct msg_input in = {.fd = -1};

		if (number) {
			int n = snprintf((char *)copy, 64, "X-Seq: %lu\r\n", i);

			memcpy(copy + n, msg, len);
			in.data = copy;
			in.len = len + (size_t)n;
		} else {
			in.data = msg;
			in.len = len;
		}
		r = storage_append(st, argv[optind + 1], mailbox, &in, &uidv, &uid);
	}
	if (r != 0)
		fprintf(stderr, "roost-fill: %s\n", roost_strerror(r));
	else
		printf("%u %u\n", uidv, uid);
	storage_close(&st);
	config_free(&cfg);
	free(copy);
	free(msg);
	return r == 0 ? 0 : 1;
usage:
	fprintf(stderr, "usage: roost-fill [-n] [-F] [-m MAILBOX] CONFIG USER COUNT < message\n");
	return 2;
}
