#include <stdio.h>
#include <string.h>

#include "roost/config.h"
#include "roost/error.h"
#include "roost/log.h"
#include "roost/server.h"
#include "roost/services.h"
#include "testd.h"

/*
 * build/roost-testd: the runtime with the test protocol, for
 * tests/integration/test_runtime.py.
 *
 *   roost-testd [serve] [--config FILE]
 *
 * The [listen] keys "imap" and "imaps" of the config become the test
 * protocol's plaintext (STARTTLS-capable) and implicit-TLS listeners, "lmtp"
 * a second plaintext one (for unix sockets); the others are ignored. SIGTERM/SIGINT: graceful
 * shutdown, exit 0.
 */

static int
on_reload(void *arg, const struct roost_config *cfg, char *err, size_t errlen)
{
	(void)arg;
	(void)cfg;
	(void)err;
	(void)errlen;
	log_info("event=testd_reload");
	return 0;
}

int
main(int argc, char **argv)
{
	const char *path = NULL;
	struct roost_config *cfg = NULL;
	struct roost_services services = {0};
	struct server *srv = NULL;
	enum log_level level;
	char err[512];
	int rc = 1;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--config") == 0 && i + 1 < argc)
			path = argv[++i];
		else if (strcmp(argv[i], "serve") != 0) {
			fprintf(stderr, "usage: roost-testd [serve] [--config FILE]\n");
			return 2;
		}
	}
	if (config_load(path, &cfg, err, sizeof(err)) != 0) {
		fprintf(stderr, "roost-testd: %s\n", err);
		return 2;
	}
	if (log_level_parse(cfg->log_level, &level) == 0)
		log_setup(level, true, false);
	memset(&services, 0, sizeof(services));
	services.cfg = cfg;
	if (server_create(cfg, &services, &srv) != 0)
		goto out;
	if (server_listen(srv, "test", cfg->listen_imap.addrs, &testd_ops, false) != 0 ||
	    server_listen(srv, "tests", cfg->listen_imaps.addrs, &testd_ops, true) != 0 ||
	    server_listen(srv, "testu", cfg->listen_lmtp.addrs, &testd_ops, false) != 0)
		goto out;
	server_set_reload(srv, on_reload, NULL);
	testd_notifier_start();
	rc = server_run(srv) == 0 ? 0 : 1;
	testd_notifier_stop();
out:
	server_free(&srv);
	config_free(&cfg);
	return rc;
}
