/*
 * The JMAP Session resource (RFC 8620 2): capabilities and limits, the
 * user's own account and one account per owner sharing mailboxes with the
 * user (jmap_account.c), the API, upload, download and EventSource URLs,
 * and the state that tells a client when to fetch it again.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "roost/config.h"
#include "roost/conn.h"
#include "roost/services.h"
#include "roost/xalloc.h"

#include "jmap_impl.h"

static void
base_url(struct http_session *s, struct buf *out)
{
	const char *host = http_request_field(&s->req, "Host");

	buf_printf(out, "%s://%s", conn_is_tls(s->c) ? "https" : "http",
	           host != NULL ? host : conn_local(s->c));
}

/* The session changes with the configuration, the user and the accounts
 * shared with the user (RFC 8620 2: a client fetches the Session again
 * when the state it sees in an API response differs). */
void
jmap_session_state(struct http_session *s, const struct jmap_account *v, size_t n, char out[20])
{
	uint64_t h = jmap_name_digest(s->user) ^ s->svc->cfg->max_message_size;

	for (size_t i = 0; i < n; i++)
		h = (h * 0x100000001b3ULL) ^ jmap_name_digest(v[i].id);
	snprintf(out, 20, "%08llx", (unsigned long long)h & 0xffffffffULL);
}

/* The mail capability of an account (RFC 8621 1.3.1). */
static json_t *
mail_account_caps(const struct roost_config *cfg, bool top_level)
{
	return json_pack("{sisnsisIs[sssss]sb}", "maxMailboxesPerEmail", 1, "maxMailboxDepth",
	                 "maxSizeMailboxName", STORAGE_MAX_NAME_STORED,
	                 "maxSizeAttachmentsPerEmail", (json_int_t)cfg->max_message_size,
	                 "emailQuerySortOptions", "receivedAt", "size", "from", "subject", "sentAt",
	                 "mayCreateTopLevelMailbox", top_level);
}

/* The accounts shared with the user, each with its mail capability only:
 * submission, vacation and identities are the user's own. */
static void
shared_accounts(struct http_session *s, json_t *accounts, const struct jmap_account *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		bool pub = strcmp(v[i].owner, STORAGE_ACL_PUBLIC_OWNER) == 0;
		json_t *caps = json_object();

		json_object_set_new(caps, JMAP_MAIL, mail_account_caps(s->svc->cfg, false));
		json_object_set_new(
		    accounts, v[i].id,
		    json_pack("{sssbsbso}", "name",
		              pub ? storage_acl_shared_prefix(s->svc->storage) : v[i].owner,
		              "isPersonal", 0, "isReadOnly", v[i].readonly, "accountCapabilities",
		              caps));
	}
}

void
jmap_session_resource(struct http_session *s)
{
	const struct roost_config *cfg = s->svc->cfg;
	struct buf base = BUF_INIT(0), url = BUF_INIT(0);
	json_t *caps, *acct_caps, *session;
	struct jmap_account *shared = NULL;
	size_t n_shared = 0;
	char *text, state[20];

	(void)jmap_accounts_shared(s->svc->storage, s->user, true, &shared, &n_shared);
	base_url(s, &base);
	caps = json_pack(
	    "{s{sIsisIsisisisis[ss]}s{}s{}}", JMAP_CORE, "maxSizeUpload",
	    (json_int_t)cfg->max_message_size, "maxConcurrentUpload", JMAP_MAX_CONCURRENT_UPLOADS,
	    "maxSizeRequest", (json_int_t)cfg->http_max_request, "maxConcurrentRequests",
	    JMAP_MAX_CONCURRENT_REQUESTS, "maxCallsInRequest", JMAP_MAX_CALLS, "maxObjectsInGet",
	    JMAP_MAX_OBJECTS_GET, "maxObjectsInSet", JMAP_MAX_OBJECTS_SET, "collationAlgorithms",
	    "i;ascii-casemap", "i;unicode-casemap", JMAP_MAIL, JMAP_SUBMISSION);
	json_object_set_new(caps, JMAP_VACATION, json_object());
	json_object_set_new(caps, JMAP_BLOB, json_object());
	acct_caps = json_pack("{sos{sis{}}}", JMAP_MAIL, mail_account_caps(cfg, true),
	                      JMAP_SUBMISSION, "maxDelayedSend", 0, "submissionExtensions");
	json_object_set_new(acct_caps, JMAP_VACATION, json_object());
	/* RFC 9404: Blob/get and Blob/copy; Blob/upload and Blob/lookup are
	 * not here, which maxDataSources 0 says. */
	json_object_set_new(acct_caps, JMAP_BLOB,
	                    json_pack("{sisis[]s[ss]}", "maxSizeBlobSet", 0, "maxDataSources", 0,
	                              "supportedTypeNames", "supportedDigestAlgorithms", "sha",
	                              "sha-256"));
	session = json_pack("{sos{s{sssbsbso}}s{ssss}ss}", "capabilities", caps, "accounts",
	                    s->account, "name", s->user, "isPersonal", 1, "isReadOnly", 0,
	                    "accountCapabilities", acct_caps, "primaryAccounts", JMAP_MAIL,
	                    s->account, JMAP_SUBMISSION, s->account, "username", s->user);
	json_object_set_new(json_object_get(session, "primaryAccounts"), JMAP_VACATION,
	                    json_string(s->account));
	json_object_set_new(json_object_get(session, "primaryAccounts"), JMAP_BLOB,
	                    json_string(s->account));
	shared_accounts(s, json_object_get(session, "accounts"), shared, n_shared);
	buf_printf(&url, "%s/jmap/api/", (char *)base.data);
	json_object_set_new(session, "apiUrl", json_string((char *)url.data));
	buf_reset(&url);
	buf_printf(&url, "%s/jmap/download/{accountId}/{blobId}/{name}?accept={type}",
	           (char *)base.data);
	json_object_set_new(session, "downloadUrl", json_string((char *)url.data));
	buf_reset(&url);
	buf_printf(&url, "%s/jmap/upload/{accountId}/", (char *)base.data);
	json_object_set_new(session, "uploadUrl", json_string((char *)url.data));
	buf_reset(&url);
	buf_printf(&url, "%s/jmap/eventsource?types={types}&closeafter={closeafter}&ping={ping}",
	           (char *)base.data);
	json_object_set_new(session, "eventSourceUrl", json_string((char *)url.data));
	jmap_session_state(s, shared, n_shared, state);
	jmap_accounts_free(shared, n_shared);
	json_object_set_new(session, "state", json_string(state));
	text = json_dumps(session, JSON_COMPACT);
	http_respond(s, 200, "application/json", text, strlen(text),
	             "Cache-Control: no-cache, no-store\r\n");
	free(text);
	json_decref(session);
	buf_free(&base);
	buf_free(&url);
}
