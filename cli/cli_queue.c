/*
 * `roost queue list|show ID|flush [ID]|delete ID|hold ID|release ID`.
 * list and show read the queue files (always current: the engine rewrites
 * an envelope after every attempt). The others go to the running server
 * through its control socket, so its in-memory schedule changes with the
 * files; with no server running they edit the files directly.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "roost/cli.h"
#include "roost/config.h"
#include "roost/error.h"
#include "roost/outbound.h"
#include "roost/queue.h"

static void
print_time(const char *label, int64_t t)
{
	char buf[64];
	time_t tt = (time_t)t;
	struct tm tm;

	gmtime_r(&tt, &tm);
	strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
	printf("%s: %s\n", label, buf);
}

static const char *
state_name(enum queue_rcpt_state st)
{
	return st == QUEUE_RCPT_PENDING ? "pending" : st == QUEUE_RCPT_SENT ? "sent" : "failed";
}

static int
cmd_list(const char *dir)
{
	struct queue_entry **v;
	size_t n;

	if (queue_scan(dir, &v, &n) != 0) {
		fprintf(stderr, "roost: queue: cannot read %s\n", dir);
		return CLI_FAIL;
	}
	for (size_t i = 0; i < n; i++) {
		struct queue_entry *e = v[i];

		printf("%s %llu <%s> pending=%zu attempts=%u%s\n", e->id,
		       (unsigned long long)e->size, e->sender, queue_entry_pending(e), e->attempts,
		       e->held ? " held" : "");
		for (size_t k = 0; k < e->n_rcpts; k++) {
			if (e->rcpts[k].state == QUEUE_RCPT_PENDING)
				printf("    <%s>%s%s\n", e->rcpts[k].addr,
				       e->rcpts[k].status[0] != '\0' ? " " : "",
				       e->rcpts[k].status);
		}
		queue_entry_free(&v[i]);
	}
	free(v);
	printf("%zu message%s in the queue\n", n, n == 1 ? "" : "s");
	return CLI_OK;
}

static int
cmd_show(const char *dir, const char *id)
{
	struct queue_entry *e;
	int err = queue_load(dir, id, &e);

	if (err != 0) {
		fprintf(stderr, "roost: queue: %s: %s\n", id, roost_strerror(err));
		return CLI_FAIL;
	}
	printf("id: %s\nsender: <%s>\n", e->id, e->sender);
	if (e->user[0] != '\0')
		printf("user: %s\n", e->user);
	printf("size: %llu\nattempts: %u\nheld: %s\n", (unsigned long long)e->size, e->attempts,
	       e->held ? "yes" : "no");
	print_time("created", e->created);
	print_time("next-attempt", e->next_try);
	for (size_t k = 0; k < e->n_rcpts; k++) {
		const struct queue_rcpt *r = &e->rcpts[k];

		printf("recipient: <%s> %s", r->addr, state_name(r->state));
		if (r->code != 0)
			printf(" %d %s%s%s", r->code, r->status,
			       r->remote[0] != '\0' ? " from " : "", r->remote);
		printf("\n");
	}
	queue_entry_free(&e);
	return CLI_OK;
}

/* No server: change the files ourselves. */
static int
offline(const struct roost_config *cfg, const char *dir, const char *verb, const char *id)
{
	struct queue_entry **v = NULL;
	size_t n = 0;
	int found = 0;

	if (queue_scan(dir, &v, &n) != 0)
		return CLI_FAIL;
	for (size_t i = 0; i < n; i++) {
		struct queue_entry *e = v[i];

		if (id == NULL || strcmp(e->id, id) == 0) {
			found++;
			if (strcmp(verb, "delete") == 0) {
				queue_remove_in(dir, cfg->storage_fsync, e->id);
			} else {
				if (strcmp(verb, "hold") == 0)
					e->held = true;
				if (strcmp(verb, "release") == 0)
					e->held = false;
				if (strcmp(verb, "flush") == 0 || strcmp(verb, "release") == 0)
					e->next_try = 0;
				queue_save_in(dir, cfg->storage_fsync, e);
			}
		}
		queue_entry_free(&v[i]);
	}
	free(v);
	if (id != NULL && found == 0) {
		fprintf(stderr, "roost: queue: %s: no such queue entry\n", id);
		return CLI_FAIL;
	}
	return CLI_OK;
}

int
cli_queue(struct cli *cli)
{
	struct roost_config *cfg;
	char dir[4096], line[128], err[256];
	const char *verb, *id;
	int rc;

	if (cli->argc < 2 || cli->argc > 3)
		return cli_usage(cli);
	verb = cli->argv[1];
	id = cli->argc == 3 ? cli->argv[2] : NULL;
	if (strcmp(verb, "list") == 0    ? id != NULL
	    : strcmp(verb, "flush") == 0 ? false
	                                 : id == NULL)
		return cli_usage(cli);
	if (strcmp(verb, "list") != 0 && strcmp(verb, "show") != 0 && strcmp(verb, "flush") != 0 &&
	    strcmp(verb, "delete") != 0 && strcmp(verb, "hold") != 0 &&
	    strcmp(verb, "release") != 0)
		return cli_usage(cli);
	if (id != NULL && !queue_id_valid(id)) {
		fprintf(stderr, "roost: queue: \"%s\" is not a queue id\n", id);
		return CLI_USAGE;
	}
	if (cli_load_config(cli, &cfg) < 0)
		return CLI_USAGE;
	queue_dir_of(cfg, dir, sizeof(dir));
	if (strcmp(verb, "list") == 0) {
		rc = cmd_list(dir);
	} else if (strcmp(verb, "show") == 0) {
		rc = cmd_show(dir, id);
	} else {
		snprintf(line, sizeof(line), "%s%s%s", verb, id != NULL ? " " : "",
		         id != NULL ? id : "");
		switch (outbound_control(dir, line, err, sizeof(err))) {
		case 0:
			rc = CLI_OK;
			break;
		case ROOST_ENOTFOUND:
			rc = offline(cfg, dir, verb, id);
			break;
		default:
			fprintf(stderr, "roost: queue: %s: %s\n", line, err);
			rc = CLI_FAIL;
			break;
		}
	}
	config_free(&cfg);
	return rc;
}
