/*
 * COMPRESS (RFC 4978): DEFLATE both ways from the byte after the tagged OK.
 * The compression itself is the connection's (core/conn_deflate.c), a
 * transport layered over plaintext or TLS.
 */
#include "roost/conn.h"
#include "roost/error.h"

#include "imap_impl.h"

void
cmd_compress(struct imap_cmd *cmd)
{
	if (cmd->p.n != 1 || cmd->p.args[0].type != ARG_ATOM) {
		imap_bad(cmd, "Usage: COMPRESS DEFLATE");
		return;
	}
	if (!imap_arg_atom_eq(&cmd->p.args[0], "DEFLATE")) {
		imap_tagged(cmd, "NO", "Unknown compression mechanism");
		return;
	}
	if (conn_is_compressed(cmd->c)) {
		imap_tagged(cmd, "NO", "[COMPRESSIONACTIVE] DEFLATE active already");
		return;
	}
	/* The OK goes out uncompressed; everything after it compressed. */
	imap_tagged(cmd, "OK", "DEFLATE active");
	if (conn_compress(cmd->c) != 0) {
		/* Only STARTTLS pending could refuse, and it cannot be: the
		 * session has logged in. The client now speaks DEFLATE. */
		conn_write_str(cmd->c, "* BYE Compression failed\r\n");
		conn_close(cmd->c);
	}
}
