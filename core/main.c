#include <stdio.h>
#include <string.h>

/* Placeholder dispatcher; the CLI (serve, user, config, deliver, check,
 * bench) replaces it. */
int
main(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "--version") == 0) {
		puts("roost 0.1");
		return 0;
	}
	fprintf(stderr, "usage: roost serve|user|config|deliver|check|bench [--config FILE]\n");
	return 2;
}
