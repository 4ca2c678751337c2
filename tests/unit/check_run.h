#ifndef ROOST_CHECK_RUN_H
#define ROOST_CHECK_RUN_H

#include <check.h>

/*
 * The end of every unit test binary's main(): run the suite, let Check print
 * its report, and return the exit status (0 when every test passed).
 */
static inline int
check_run(Suite *s)
{
	SRunner *sr = srunner_create(s);
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? 0 : 1;
}

#endif
