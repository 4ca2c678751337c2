/*
 * The per-user limits of the Session resource that span connections
 * (RFC 8620 2: maxConcurrentRequests, maxConcurrentUpload): how many API
 * requests and uploads each user has running now, over every connection
 * and worker.
 *
 * Lock: mu guards the table and every count in it; it is held only for a
 * lookup and an increment, never across I/O or a request. An entry lives
 * while one of its counts is not zero, so the table holds the users with a
 * request or an upload running (bounded by the connections).
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "roost/auth.h"
#include "roost/xalloc.h"

#include "jmap_impl.h"

struct running {
	char user[AUTH_MAX_NAME + 1];
	unsigned n[2]; /* by enum jmap_limit */
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static struct running *table; /* guarded by mu */
static size_t n_table, cap_table;

static const unsigned maxima[2] = {
    [JMAP_LIMIT_REQUESTS] = JMAP_MAX_CONCURRENT_REQUESTS,
    [JMAP_LIMIT_UPLOADS] = JMAP_MAX_CONCURRENT_UPLOADS,
};

bool
jmap_limit_enter(const char *user, enum jmap_limit kind)
{
	struct running *e = NULL;
	bool ok;

	pthread_mutex_lock(&mu);
	for (size_t i = 0; i < n_table; i++) {
		if (strcmp(table[i].user, user) == 0) {
			e = &table[i];
			break;
		}
	}
	if (e == NULL) {
		if (n_table == cap_table) {
			cap_table = cap_table ? cap_table * 2 : 16;
			table = xreallocarray(table, cap_table, sizeof(*table));
		}
		e = &table[n_table++];
		memset(e, 0, sizeof(*e));
		strncpy(e->user, user, AUTH_MAX_NAME);
	}
	ok = e->n[kind] < maxima[kind];
	if (ok)
		e->n[kind]++;
	else if (e->n[JMAP_LIMIT_REQUESTS] == 0 && e->n[JMAP_LIMIT_UPLOADS] == 0)
		*e = table[--n_table]; /* only when a maximum is 0 */
	pthread_mutex_unlock(&mu);
	return ok;
}

void
jmap_limit_leave(const char *user, enum jmap_limit kind)
{
	pthread_mutex_lock(&mu);
	for (size_t i = 0; i < n_table; i++) {
		struct running *e = &table[i];

		if (strcmp(e->user, user) != 0)
			continue;
		if (e->n[kind] > 0)
			e->n[kind]--;
		if (e->n[JMAP_LIMIT_REQUESTS] == 0 && e->n[JMAP_LIMIT_UPLOADS] == 0)
			*e = table[--n_table];
		break;
	}
	pthread_mutex_unlock(&mu);
}

void
jmap_limit_body(const char *limit, int status, struct buf *out)
{
	json_t *o = json_pack("{sssssiss}", "type", "urn:ietf:params:jmap:error:limit", "limit",
	                      limit, "status", status, "detail",
	                      "The request is over a limit of the Session resource.");
	char *text = json_dumps(o, JSON_COMPACT);

	buf_append_str(out, text);
	free(text);
	json_decref(o);
}

void
jmap_limit_problem(struct http_session *s, const char *limit)
{
	struct buf b = BUF_INIT(0);

	jmap_limit_body(limit, 400, &b);
	http_respond(s, 400, "application/problem+json", b.data, b.len, NULL);
	buf_free(&b);
}
