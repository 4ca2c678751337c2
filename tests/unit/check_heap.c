#include <check.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "roost/heap.h"

#include "check_run.h"

struct item {
	int id;
	struct heap_node node;
};

static struct item *
item_of(struct heap_node *n)
{
	return (struct item *)(void *)((char *)n - offsetof(struct item, node));
}

/* Every parent's key is at most its children's, and every node knows its
 * place. */
static void
assert_valid(const struct heap *h)
{
	bool ok = true;

	/* One assertion per call: Check's are too slow for every node. */
	for (size_t i = 0; i < h->n; i++) {
		if (h->v[i]->pos != i + 1 || (i > 0 && h->v[(i - 1) / 2]->key > h->v[i]->key))
			ok = false;
	}
	ck_assert(ok);
}

START_TEST(empty)
{
	struct heap h = HEAP_INIT;
	struct item a = {0};

	ck_assert_ptr_null(heap_peek(&h));
	ck_assert_ptr_null(heap_pop(&h));
	ck_assert(!heap_contains(&h, &a.node));
	heap_remove(&h, &a.node); /* not there: nothing happens */
	ck_assert_uint_eq(heap_count(&h), 0);
	heap_free(&h);
}
END_TEST

START_TEST(sorted_out)
{
	enum { N = 1000 };
	struct heap h = HEAP_INIT;
	struct item *it = calloc(N, sizeof(*it));
	int64_t last = INT64_MIN;

	srand(7);
	for (int i = 0; i < N; i++) {
		it[i].id = i;
		heap_set(&h, &it[i].node, rand() % 500 - 250);
		if (i % 50 == 0)
			assert_valid(&h);
	}
	ck_assert_uint_eq(heap_count(&h), N);
	for (int i = 0; i < N; i++) {
		struct heap_node *x = heap_pop(&h);

		ck_assert_ptr_nonnull(x);
		ck_assert(x->key >= last);
		ck_assert(!heap_contains(&h, x));
		last = x->key;
	}
	ck_assert_ptr_null(heap_pop(&h));
	heap_free(&h);
	free(it);
}
END_TEST

/* Equal keys leave in the order they came (fairness among entries due at
 * the same second). */
START_TEST(ties_fifo)
{
	struct heap h = HEAP_INIT;
	struct item it[50];

	for (int i = 0; i < 50; i++) {
		it[i].id = i;
		it[i].node.pos = 0;
		heap_set(&h, &it[i].node, i % 2 == 0 ? 5 : 3);
	}
	for (int want = 1; want < 50; want += 2)
		ck_assert_int_eq(item_of(heap_pop(&h))->id, want);
	for (int want = 0; want < 50; want += 2)
		ck_assert_int_eq(item_of(heap_pop(&h))->id, want);
	heap_free(&h);
}
END_TEST

/* Random inserts, re-keys and removals of arbitrary nodes against a
 * plain array as the model. */
START_TEST(random_model)
{
	enum { N = 300, STEPS = 20000 };
	struct heap h = HEAP_INIT;
	struct item *it = calloc(N, sizeof(*it));
	bool *in = calloc(N, sizeof(*in));
	int64_t *key = calloc(N, sizeof(*key));

	srand(11);
	for (int step = 0; step < STEPS; step++) {
		int i = rand() % N, op = rand() % 4;

		if (op < 2) {
			key[i] = rand() % 1000;
			heap_set(&h, &it[i].node, key[i]);
			in[i] = true;
		} else if (op == 2) {
			heap_remove(&h, &it[i].node);
			in[i] = false;
		} else {
			struct heap_node *x = heap_pop(&h);
			int64_t least = INT64_MAX;

			for (int j = 0; j < N; j++) {
				if (in[j] && key[j] < least)
					least = key[j];
			}
			if (x == NULL) {
				ck_assert(least == INT64_MAX);
			} else {
				ck_assert(x->key == least);
				in[item_of(x) - it] = false;
			}
		}
		if (step % 97 == 0)
			assert_valid(&h);
		if (step % 13 == 0) {
			size_t count = 0;
			bool same = true;

			for (int j = 0; j < N; j++) {
				same = same && heap_contains(&h, &it[j].node) == in[j];
				count += in[j];
			}
			ck_assert(same);
			ck_assert_uint_eq(heap_count(&h), count);
		}
	}
	assert_valid(&h);
	heap_free(&h);
	for (int j = 0; j < N; j++) {
		if (it[j].node.pos != 0)
			ck_abort_msg("node %d still placed after heap_free", j);
	}
	free(it);
	free(in);
	free(key);
}
END_TEST

/* A node in one heap is not taken for a member of another. */
START_TEST(two_heaps)
{
	struct heap a = HEAP_INIT, b = HEAP_INIT;
	struct item x[3] = {{0}};

	heap_set(&a, &x[0].node, 1);
	heap_set(&b, &x[1].node, 1);
	heap_set(&b, &x[2].node, 2);
	ck_assert(heap_contains(&a, &x[0].node));
	ck_assert(!heap_contains(&b, &x[0].node));
	ck_assert(!heap_contains(&a, &x[1].node));
	heap_remove(&b, &x[0].node); /* lives in a: b is untouched */
	ck_assert_uint_eq(heap_count(&b), 2);
	ck_assert(heap_contains(&a, &x[0].node));
	heap_remove(&a, &x[0].node);
	heap_set(&b, &x[0].node, 0);
	ck_assert_ptr_eq(heap_peek(&b), &x[0].node);
	heap_free(&a);
	heap_free(&b);
}
END_TEST

/* Re-keying moves a node both ways. */
START_TEST(rekey)
{
	struct heap h = HEAP_INIT;
	struct item it[10];

	for (int i = 0; i < 10; i++) {
		it[i].node.pos = 0;
		heap_set(&h, &it[i].node, 10 * i);
	}
	heap_set(&h, &it[9].node, -1);
	ck_assert_ptr_eq(heap_peek(&h), &it[9].node);
	heap_set(&h, &it[9].node, 1000);
	ck_assert_ptr_eq(heap_peek(&h), &it[0].node);
	heap_set(&h, &it[0].node, 55);
	ck_assert_ptr_eq(heap_peek(&h), &it[1].node);
	assert_valid(&h);
	ck_assert_uint_eq(heap_count(&h), 10);
	heap_free(&h);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("heap");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, empty);
	tcase_add_test(tc, sorted_out);
	tcase_add_test(tc, ties_fifo);
	tcase_add_test(tc, random_model);
	tcase_add_test(tc, two_heaps);
	tcase_add_test(tc, rekey);
	suite_add_tcase(s, tc);
	return check_run(s);
}
