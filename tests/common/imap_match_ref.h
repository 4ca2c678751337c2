#ifndef ROOST_TESTS_IMAP_MATCH_REF_H
#define ROOST_TESTS_IMAP_MATCH_REF_H

#include <stdbool.h>

/*
 * The LIST pattern definition, by backtracking: "*" matches anything, "%"
 * anything but the hierarchy separator "/". Exponential, so only for the
 * short inputs the matcher's unit tests and fuzzer compare against it.
 */
static inline bool
imap_match_ref(const char *p, const char *n)
{
	if (*p == '\0')
		return *n == '\0';
	if (*p == '*')
		return imap_match_ref(p + 1, n) || (*n != '\0' && imap_match_ref(p, n + 1));
	if (*p == '%')
		return imap_match_ref(p + 1, n) ||
		       (*n != '\0' && *n != '/' && imap_match_ref(p, n + 1));
	return *n == *p && imap_match_ref(p + 1, n + 1);
}

#endif
