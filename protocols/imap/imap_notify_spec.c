/*
 * NOTIFY (RFC 5465), the request: NOTIFY SET/NONE parsed into a
 * notify_spec (RFC 5465 8: event groups, filters, events and MessageNew's
 * fetch attributes), and which events a mailbox gets under it. The
 * session's watch, snapshot and reports are in imap_notify.c.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "roost/error.h"
#include "roost/storage.h"
#include "roost/xalloc.h"

#include "imap_impl.h"

/* ------------------------------------------------------------------ */
/* The command's grammar (RFC 5465 8)                                  */

static const struct {
	const char *name;
	unsigned bit; /* 0: a known event Roost does not report */
} event_names[] = {
    {"MessageNew", NEV_MESSAGE_NEW},
    {"MessageExpunge", NEV_MESSAGE_EXPUNGE},
    {"FlagChange", NEV_FLAG_CHANGE},
    {"MailboxName", NEV_MAILBOX_NAME},
    {"SubscriptionChange", NEV_SUBSCRIPTION_CHANGE},
    {"MailboxMetadataChange", NEV_MAILBOX_METADATA},
    {"ServerMetadataChange", NEV_SERVER_METADATA},
    {"AnnotationChange", 0},
};

const char *
imap_notify_events_supported(void)
{
	return "MessageNew MessageExpunge FlagChange MailboxName SubscriptionChange "
	       "MailboxMetadataChange ServerMetadataChange";
}

static const struct {
	const char *name;
	enum notify_filter f;
} filter_names[] = {
    {"SELECTED", NF_SELECTED},     {"SELECTED-DELAYED", NF_SELECTED_DELAYED},
    {"INBOXES", NF_INBOXES},       {"PERSONAL", NF_PERSONAL},
    {"SUBSCRIBED", NF_SUBSCRIBED}, {"SUBTREE", NF_SUBTREE},
    {"MAILBOXES", NF_MAILBOXES},
};

static const struct {
	const char *name;
	unsigned bit;
} fetch_names[] = {
    {"UID", NF_FETCH_UID},       {"FLAGS", NF_FETCH_FLAGS},     {"INTERNALDATE", NF_FETCH_DATE},
    {"MODSEQ", NF_FETCH_MODSEQ}, {"EMAILID", NF_FETCH_EMAILID},
};

void
imap_notify_spec_free(struct notify_spec *spec)
{
	for (size_t i = 0; i < spec->n_groups; i++) {
		for (size_t k = 0; k < spec->groups[i].n_names; k++)
			free(spec->groups[i].names[k]);
		free(spec->groups[i].names);
	}
	free(spec->groups);
	memset(spec, 0, sizeof(*spec));
}

/* One mailbox name of a SUBTREE or MAILBOXES list, in storage form. */
static int
parse_name(const struct imap_session *s, const struct imap_arg *a, char **name_r,
           const char **err_r)
{
	struct buf b = BUF_INIT(0);

	if (!imap_arg_is_astring(a) || a->str == NULL) {
		*err_r = "Invalid mailbox name";
		return ROOST_EINVAL;
	}
	if (imap_name_decode(s, a->str, a->len, &b) < 0 || b.len == 0 || b.len > STORAGE_MAX_NAME) {
		buf_free(&b);
		*err_r = "Invalid mailbox name encoding";
		return ROOST_EINVAL;
	}
	if (strcasecmp(buf_cstr(&b), "INBOX") == 0 ||
	    (b.len > 6 && strncasecmp(buf_cstr(&b), "INBOX/", 6) == 0))
		memcpy(b.data, "INBOX", 5);
	*name_r = xstrdup(buf_cstr(&b));
	buf_free(&b);
	return 0;
}

static int
parse_fetch_atts(const struct imap_arg *l, unsigned *fetch_r, const char **err_r)
{
	if (l->n == 0) {
		*err_r = "Empty MessageNew fetch attribute list";
		return ROOST_EINVAL;
	}
	for (size_t i = 0; i < l->n; i++) {
		size_t k;

		if (l->list[i].type != ARG_ATOM) {
			*err_r = "Unsupported MessageNew fetch attribute";
			return ROOST_ENOTSUP;
		}
		for (k = 0; k < sizeof(fetch_names) / sizeof(fetch_names[0]); k++) {
			if (imap_arg_atom_eq(&l->list[i], fetch_names[k].name))
				break;
		}
		if (k == sizeof(fetch_names) / sizeof(fetch_names[0])) {
			*err_r = "Unsupported MessageNew fetch attribute";
			return ROOST_ENOTSUP;
		}
		*fetch_r |= fetch_names[k].bit;
	}
	return 0;
}

/* The events of one group: NONE or a list; *badevent_r set for an event
 * Roost does not report (the command's answer is then NO [BADEVENT]). */
static int
parse_events(const struct imap_arg *a, struct notify_group *g, unsigned *fetch_r, bool *badevent_r,
             const char **err_r)
{
	bool selected = g->filter == NF_SELECTED || g->filter == NF_SELECTED_DELAYED;
	int rc;

	if (a->type == ARG_ATOM && imap_arg_atom_eq(a, "NONE"))
		return 0;
	if (a->type != ARG_LIST || a->n == 0) {
		*err_r = "Expected an event list or NONE";
		return ROOST_EINVAL;
	}
	for (size_t i = 0; i < a->n; i++) {
		const struct imap_arg *e = &a->list[i];
		size_t k;

		if (e->type != ARG_ATOM) {
			*err_r = "Invalid event";
			return ROOST_EINVAL;
		}
		for (k = 0; k < sizeof(event_names) / sizeof(event_names[0]); k++) {
			if (imap_arg_atom_eq(e, event_names[k].name))
				break;
		}
		if (k == sizeof(event_names) / sizeof(event_names[0]) || event_names[k].bit == 0) {
			*badevent_r = true;
			continue;
		}
		g->events |= event_names[k].bit;
		if (event_names[k].bit == NEV_MESSAGE_NEW && i + 1 < a->n &&
		    a->list[i + 1].type == ARG_LIST) {
			i++;
			/* Fetch attributes serve the selected mailbox only; the
			 * others get STATUS (RFC 5465 5.2). */
			if (selected && (rc = parse_fetch_atts(&a->list[i], fetch_r, err_r)) < 0)
				return rc;
		}
	}
	if (selected && (g->events & (NEV_MAILBOX_NAME | NEV_SUBSCRIPTION_CHANGE |
	                              NEV_MAILBOX_METADATA | NEV_SERVER_METADATA)) != 0) {
		*err_r = "Only message events apply to SELECTED";
		return ROOST_EINVAL;
	}
	if (((g->events & NEV_MESSAGE_NEW) != 0) != ((g->events & NEV_MESSAGE_EXPUNGE) != 0)) {
		*err_r = "MessageNew and MessageExpunge go together";
		return ROOST_EINVAL;
	}
	if ((g->events & NEV_FLAG_CHANGE) != 0 && (g->events & NEV_MESSAGE_NEW) == 0) {
		*err_r = "FlagChange needs MessageNew and MessageExpunge";
		return ROOST_EINVAL;
	}
	return 0;
}

static int
parse_group(const struct imap_session *s, const struct imap_arg *a, struct notify_group *g,
            unsigned *fetch_r, size_t *n_names, bool *badevent_r, const char **err_r)
{
	size_t k, at = 1;
	int rc;

	if (a->type != ARG_LIST || a->n < 2 || a->list[0].type != ARG_ATOM) {
		*err_r = "Expected (filter events)";
		return ROOST_EINVAL;
	}
	for (k = 0; k < sizeof(filter_names) / sizeof(filter_names[0]); k++) {
		if (imap_arg_atom_eq(&a->list[0], filter_names[k].name))
			break;
	}
	if (k == sizeof(filter_names) / sizeof(filter_names[0])) {
		*err_r = "Unknown mailbox filter";
		return ROOST_EINVAL;
	}
	g->filter = filter_names[k].f;
	if (g->filter == NF_SUBTREE || g->filter == NF_MAILBOXES) {
		const struct imap_arg *m = &a->list[1];
		const struct imap_arg *one = m;
		size_t n = 1;

		if (m->type == ARG_LIST) {
			one = m->list;
			n = m->n;
			if (n == 0) {
				*err_r = "Empty mailbox list";
				return ROOST_EINVAL;
			}
		}
		if (*n_names + n > NOTIFY_MAX_MAILBOXES)
			return ROOST_ETOOBIG;
		*n_names += n;
		g->names = xcalloc(n, sizeof(*g->names));
		for (size_t i = 0; i < n; i++) {
			if ((rc = parse_name(s, &one[i], &g->names[i], err_r)) < 0)
				return rc;
			g->n_names++;
		}
		at = 2;
	}
	if (a->n != at + 1) {
		*err_r = "Expected (filter events)";
		return ROOST_EINVAL;
	}
	return parse_events(&a->list[at], g, fetch_r, badevent_r, err_r);
}

int
imap_notify_parse(const struct imap_session *s, const struct imap_arg *args, size_t n,
                  struct notify_spec *spec, const char **err_r)
{
	size_t i = 1, n_names = 0;
	bool badevent = false, have_selected = false;
	int rc = 0;

	memset(spec, 0, sizeof(*spec));
	*err_r = NULL;
	if (n == 0 || args[0].type != ARG_ATOM) {
		*err_r = "Usage: NOTIFY SET [STATUS] (filter events)... or NOTIFY NONE";
		return ROOST_EINVAL;
	}
	if (imap_arg_atom_eq(&args[0], "NONE")) {
		if (n != 1) {
			*err_r = "NOTIFY NONE takes no arguments";
			return ROOST_EINVAL;
		}
		spec->none = true;
		return 0;
	}
	if (!imap_arg_atom_eq(&args[0], "SET")) {
		*err_r = "Usage: NOTIFY SET [STATUS] (filter events)... or NOTIFY NONE";
		return ROOST_EINVAL;
	}
	if (i < n && args[i].type == ARG_ATOM && imap_arg_atom_eq(&args[i], "STATUS")) {
		spec->status = true;
		i++;
	}
	if (i == n) {
		*err_r = "NOTIFY SET needs an event group";
		return ROOST_EINVAL;
	}
	if (n - i > NOTIFY_MAX_GROUPS) {
		*err_r = "Too many event groups";
		return ROOST_EINVAL;
	}
	spec->groups = xcalloc(n - i, sizeof(*spec->groups));
	for (; i < n; i++) {
		struct notify_group *g = &spec->groups[spec->n_groups++];

		rc = parse_group(s, &args[i], g, &spec->fetch, &n_names, &badevent, err_r);
		if (rc < 0)
			goto fail;
		if (g->filter == NF_SELECTED || g->filter == NF_SELECTED_DELAYED) {
			if (have_selected) {
				*err_r = "Only one of SELECTED and SELECTED-DELAYED";
				rc = ROOST_EINVAL;
				goto fail;
			}
			have_selected = true;
		}
	}
	if (badevent) {
		rc = ROOST_ENOTSUP;
		goto fail;
	}
	return 0;
fail:
	imap_notify_spec_free(spec);
	return rc;
}

/* ------------------------------------------------------------------ */
/* Which events a mailbox gets                                         */

static bool
group_names(const struct notify_group *g, const char *name)
{
	for (size_t i = 0; i < g->n_names; i++) {
		const char *m = g->names[i];
		size_t len = strlen(m);

		if (strcmp(m, name) == 0)
			return true;
		if (g->filter == NF_SUBTREE && strncmp(m, name, len) == 0 && name[len] == '/')
			return true;
	}
	return false;
}

/*
 * The events for a mailbox other than the selected one: those of every
 * group whose filter takes it (RFC 5465 6.2-6.6). Roost delivers to any
 * personal folder (+folder addresses), so INBOXES takes every personal
 * mailbox, as PERSONAL does (RFC 5465 6.3); other users' and shared
 * mailboxes are taken by SUBSCRIBED, SUBTREE and MAILBOXES only.
 */
unsigned
notify_events_for(const struct notify_spec *spec, const char *name, unsigned attrs, bool foreign)
{
	unsigned ev = 0;

	for (size_t i = 0; i < spec->n_groups; i++) {
		const struct notify_group *g = &spec->groups[i];
		bool match = false;

		switch (g->filter) {
		case NF_SELECTED:
		case NF_SELECTED_DELAYED:
			break;
		case NF_INBOXES:
		case NF_PERSONAL:
			match = !foreign;
			break;
		case NF_SUBSCRIBED:
			match = (attrs & MBOX_SUBSCRIBED) != 0;
			break;
		case NF_SUBTREE:
		case NF_MAILBOXES:
			match = group_names(g, name);
			break;
		}
		if (match)
			ev |= g->events;
	}
	return ev;
}

const struct notify_group *
notify_selected_group(const struct notify_spec *spec)
{
	for (size_t i = 0; i < spec->n_groups; i++) {
		if (spec->groups[i].filter == NF_SELECTED ||
		    spec->groups[i].filter == NF_SELECTED_DELAYED)
			return &spec->groups[i];
	}
	return NULL;
}
