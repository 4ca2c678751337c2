#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "roost/config.h"
#include "roost/error.h"
#include "roost/log.h"
#include "roost/tls.h"
#include "roost/xalloc.h"

struct tls {
	const struct roost_config *cfg;
	/* mu guards ctx only; SSL_new takes its own reference on the context,
	 * so swapping it never pulls a context from under a connection. */
	pthread_mutex_t mu;
	SSL_CTX *ctx;
};

void
tls_log_errors(enum log_level level, const char *fields, const char *reason)
{
	unsigned long e;
	char msg[256];
	int n = 0;

	while ((e = ERR_get_error()) != 0) {
		ERR_error_string_n(e, msg, sizeof(msg));
		log_msg(level, "event=tls_error reason=%s%s%s ssl=%s", reason, *fields ? " " : "",
		        fields, LOG_QUOTE(msg));
		n++;
	}
	if (n == 0)
		log_msg(level, "event=tls_error reason=%s%s%s", reason, *fields ? " " : "", fields);
}

static bool
file_exists(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0;
}

/* mkdir of the directory holding path (one level: its parent must exist). */
static int
make_parent_dir(const char *path)
{
	char dir[PATH_MAX];
	char *slash;

	if (snprintf(dir, sizeof(dir), "%s", path) >= (int)sizeof(dir))
		return ROOST_EINVAL;
	slash = strrchr(dir, '/');
	if (slash == NULL || slash == dir)
		return 0;
	*slash = '\0';
	if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
		log_error("event=tls_mkdir path=%s error=\"%s\"", dir, strerror(errno));
		return ROOST_EIO;
	}
	return 0;
}

static int
add_san(X509 *x, const char *hostname)
{
	char san[600];
	X509V3_CTX v3;
	X509_EXTENSION *ext;

	snprintf(san, sizeof(san), "DNS:%s,DNS:localhost,IP:127.0.0.1,IP:::1", hostname);
	X509V3_set_ctx_nodb(&v3);
	X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
	ext = X509V3_EXT_conf_nid(NULL, &v3, NID_subject_alt_name, san);
	if (ext == NULL)
		return -1;
	X509_add_ext(x, ext, -1);
	X509_EXTENSION_free(ext);
	ext = X509V3_EXT_conf_nid(NULL, &v3, NID_basic_constraints, "critical,CA:FALSE");
	if (ext == NULL)
		return -1;
	X509_add_ext(x, ext, -1);
	X509_EXTENSION_free(ext);
	return 0;
}

/* Write PEM through a temporary file and rename, so a reader never sees half
 * a file and two processes starting at once do not mix their output. */
static int
write_pem(const char *path, mode_t mode, EVP_PKEY *key, X509 *cert)
{
	char tmp[PATH_MAX];
	FILE *f = NULL;
	int fd, ok;

	if (snprintf(tmp, sizeof(tmp), "%s.%ld.tmp", path, (long)getpid()) >= (int)sizeof(tmp))
		return ROOST_EINVAL;
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
	if (fd < 0 || (f = fdopen(fd, "w")) == NULL) {
		log_error("event=tls_write path=%s error=\"%s\"", tmp, strerror(errno));
		if (fd >= 0)
			close(fd);
		return ROOST_EIO;
	}
	ok = key != NULL ? PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL)
	                 : PEM_write_X509(f, cert);
	if (fflush(f) != 0 || fsync(fileno(f)) != 0)
		ok = 0;
	if (fclose(f) != 0)
		ok = 0;
	if (!ok || rename(tmp, path) != 0) {
		log_error("event=tls_write path=%s error=\"%s\"", path, strerror(errno));
		unlink(tmp);
		return ROOST_EIO;
	}
	return 0;
}

static int
generate_self_signed(const struct roost_config *cfg)
{
	const char *host = cfg->hostname != NULL ? cfg->hostname : "localhost";
	EVP_PKEY *key = NULL;
	X509 *x = NULL;
	X509_NAME *name;
	int err = ROOST_ECONFIG;

	if (make_parent_dir(cfg->tls_key) != 0 || make_parent_dir(cfg->tls_cert) != 0)
		return ROOST_ECONFIG;
	key = EVP_EC_gen("P-256");
	x = X509_new();
	if (key == NULL || x == NULL)
		goto fail;
	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), (long)(clock() ^ time(NULL)) & 0x7fffffff);
	X509_gmtime_adj(X509_getm_notBefore(x), -3600);
	X509_gmtime_adj(X509_getm_notAfter(x), 10L * 365 * 24 * 3600);
	X509_set_pubkey(x, key);
	name = X509_get_subject_name(x);
	if (!X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)host, -1,
	                                -1, 0))
		goto fail;
	X509_set_issuer_name(x, name);
	if (add_san(x, host) != 0 || X509_sign(x, key, EVP_sha256()) == 0)
		goto fail;
	if (write_pem(cfg->tls_key, 0600, key, NULL) != 0 ||
	    write_pem(cfg->tls_cert, 0644, NULL, x) != 0)
		goto fail;
	log_info("event=tls_selfsigned cert=%s key=%s cn=%s", cfg->tls_cert, cfg->tls_key, host);
	err = 0;
fail:
	if (err != 0)
		tls_log_errors(LOG_LEVEL_ERROR, "", "generate_certificate");
	X509_free(x);
	EVP_PKEY_free(key);
	return err;
}

static SSL_CTX *
ctx_build(const struct roost_config *cfg)
{
	const char *minp = cfg->tls_min_protocol;
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	int version = TLS1_2_VERSION;

	if (ctx == NULL) {
		tls_log_errors(LOG_LEVEL_ERROR, "", "ctx_new");
		return NULL;
	}
	if (minp != NULL && strcmp(minp, "TLSv1.3") == 0)
		version = TLS1_3_VERSION;
	else if (minp != NULL && minp[0] != '\0' && strcmp(minp, "TLSv1.2") != 0) {
		log_error("event=tls_config key=min_protocol value=%s error=\"TLSv1.2 or TLSv1.3\"",
		          minp);
		goto fail;
	}
	SSL_CTX_set_min_proto_version(ctx, version);
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE |
	                             SSL_OP_IGNORE_UNEXPECTED_EOF | SSL_OP_NO_COMPRESSION);
	/* Partial writes and a moving buffer: the output buffer is compacted
	 * between retries. Released buffers: an idle TLS connection should not
	 * pin 2 x 16K of record buffers. */
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
	                          SSL_MODE_RELEASE_BUFFERS);
	if (cfg->tls_ciphers != NULL && cfg->tls_ciphers[0] != '\0' &&
	    !SSL_CTX_set_cipher_list(ctx, cfg->tls_ciphers)) {
		tls_log_errors(LOG_LEVEL_ERROR, "key=ciphers", "config");
		goto fail;
	}
	if (cfg->tls_ciphersuites != NULL && cfg->tls_ciphersuites[0] != '\0' &&
	    !SSL_CTX_set_ciphersuites(ctx, cfg->tls_ciphersuites)) {
		tls_log_errors(LOG_LEVEL_ERROR, "key=ciphersuites", "config");
		goto fail;
	}
	if (SSL_CTX_use_certificate_chain_file(ctx, cfg->tls_cert) != 1) {
		log_error("event=tls_config cert=%s error=\"cannot load certificate\"",
		          cfg->tls_cert);
		tls_log_errors(LOG_LEVEL_ERROR, "", "load_cert");
		goto fail;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, cfg->tls_key, SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_check_private_key(ctx) != 1) {
		log_error("event=tls_config key=%s error=\"cannot load key or it does not match\"",
		          cfg->tls_key);
		tls_log_errors(LOG_LEVEL_ERROR, "", "load_key");
		goto fail;
	}
	return ctx;
fail:
	SSL_CTX_free(ctx);
	return NULL;
}

int
tls_create(const struct roost_config *cfg, struct tls **tls_r)
{
	struct tls *t;
	SSL_CTX *ctx;

	if (cfg->tls_cert == NULL || cfg->tls_key == NULL) {
		log_error("event=tls_config error=\"no certificate or key path\"");
		return ROOST_ECONFIG;
	}
	if (!file_exists(cfg->tls_cert) && !file_exists(cfg->tls_key) &&
	    generate_self_signed(cfg) != 0)
		return ROOST_ECONFIG;
	if ((ctx = ctx_build(cfg)) == NULL)
		return ROOST_ECONFIG;
	t = xcalloc(1, sizeof(*t));
	t->cfg = cfg;
	t->ctx = ctx;
	pthread_mutex_init(&t->mu, NULL);
	*tls_r = t;
	return 0;
}

int
tls_reload(struct tls *t, const struct roost_config *cfg)
{
	SSL_CTX *ctx = ctx_build(cfg), *old;

	if (ctx == NULL) {
		log_error("event=tls_reload status=failed error=\"keeping the old certificate\"");
		return ROOST_ECONFIG;
	}
	pthread_mutex_lock(&t->mu);
	old = t->ctx;
	t->ctx = ctx;
	t->cfg = cfg;
	pthread_mutex_unlock(&t->mu);
	SSL_CTX_free(old);
	log_info("event=tls_reload status=ok cert=%s", cfg->tls_cert);
	return 0;
}

void
tls_free(struct tls **tp)
{
	struct tls *t = *tp;

	if (t == NULL)
		return;
	SSL_CTX_free(t->ctx);
	pthread_mutex_destroy(&t->mu);
	free(t);
	*tp = NULL;
}

SSL *
tls_ssl_new(struct tls *t, int fd)
{
	SSL *ssl;

	pthread_mutex_lock(&t->mu);
	ssl = SSL_new(t->ctx);
	pthread_mutex_unlock(&t->mu);
	if (ssl == NULL) {
		tls_log_errors(LOG_LEVEL_ERROR, "", "ssl_new");
		return NULL;
	}
	if (SSL_set_fd(ssl, fd) != 1) {
		tls_log_errors(LOG_LEVEL_ERROR, "", "ssl_set_fd");
		SSL_free(ssl);
		return NULL;
	}
	SSL_set_accept_state(ssl);
	return ssl;
}

void
tls_describe(SSL *ssl, char *buf, size_t size)
{
	snprintf(buf, size, "%s %s", SSL_get_version(ssl), SSL_get_cipher_name(ssl));
}
