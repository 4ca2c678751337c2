#include <check.h>
#include <string.h>

#include "roost/hash.h"

#include "check_run.h"

/* The published FNV-1a test vectors. */
START_TEST(vectors)
{
	ck_assert_uint_eq(hash_str(""), 0x811c9dc5u);
	ck_assert_uint_eq(hash_str("a"), 0xe40c292cu);
	ck_assert_uint_eq(hash_str("foobar"), 0xbf9cf968u);
	ck_assert_uint_eq(hash_str64(""), 0xcbf29ce484222325ull);
	ck_assert_uint_eq(hash_str64("a"), 0xaf63dc4c8601ec8cull);
	ck_assert_uint_eq(hash_str64("foobar"), 0x85944171f73967e8ull);
}
END_TEST

START_TEST(pieces_chain)
{
	const char *s = "user@example.org";
	size_t n = strlen(s);

	for (size_t cut = 0; cut <= n; cut++) {
		ck_assert_uint_eq(
		    hash_fnv1a32(s + cut, n - cut, hash_fnv1a32(s, cut, HASH_FNV1A32_INIT)),
		    hash_str(s));
		ck_assert_uint_eq(
		    hash_fnv1a64(s + cut, n - cut, hash_fnv1a64(s, cut, HASH_FNV1A64_INIT)),
		    hash_str64(s));
	}
	/* bytes above 0x7f are hashed as unsigned values */
	ck_assert_uint_eq(hash_str("\xff"), (0x811c9dc5u ^ 0xffu) * 16777619u);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("hash");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, vectors);
	tcase_add_test(tc, pieces_chain);
	suite_add_tcase(s, tc);
	return check_run(s);
}
