#ifndef ROOST_FDIO_H
#define ROOST_FDIO_H

#include <stdbool.h>
#include <stddef.h>

#include "roost/buf.h"

/*
 * Blocking file-descriptor I/O for files and spools: whole writes and reads
 * that retry on EINTR and on short counts, on files, pipes and blocking
 * sockets. Not for the server's connections: those are non-blocking and
 * owned by the event loop (conn.h). Thread-safe; each call uses only the
 * descriptor and the buffer it is given.
 *
 * On failure errno says why, for the caller's log line.
 */

/*
 * Write all of data[0..len) to fd: 0, or ROOST_EIO (a write that wrote
 * nothing sets errno to EIO). On error some prefix of the data may have
 * been written.
 */
int fdio_write_all(int fd, const void *data, size_t len);

/*
 * Read fd to its end, appending to out: 0; ROOST_ETOOBIG when the data
 * pass out's maximum (out then holds what fit); ROOST_EIO on a read error.
 */
int fdio_read_all(int fd, struct buf *out);

/*
 * The whole file at path into out, which this initialises with the
 * maximum max (0: none): 0; ROOST_ENOTFOUND when there is no such file;
 * ROOST_ETOOBIG; ROOST_EIO. On error out is left empty and freed.
 */
int fdio_read_file(const char *path, size_t max, struct buf *out);

/*
 * A new empty file in the directory dir, open for reading and writing, that
 * has no name (O_TMPFILE; on file systems without it, a file named
 * dir/<prefix>XXXXXX unlinked at once), so nothing is left behind when
 * the descriptor is closed or the process dies: the descriptor, or -1 with
 * errno set.
 */
int fdio_open_spool(const char *dir, const char *prefix);

/*
 * fsync the directory at path, so that the entries last created, renamed
 * or removed in it are on stable storage: 0, or ROOST_EIO. A file system
 * that cannot sync a directory (EINVAL) counts as success.
 */
int fdio_fsync_dir(const char *path);

/*
 * Put the file at from also at to (a new name: never replaced): a hard link
 * when both are on one file system, else a copy (synced when do_fsync) with
 * from's mode and mtime. A link shares the inode: right for files never
 * changed in place (message files, body files), wrong for the others, so
 * link is a request: false always copies. 0, ROOST_ENOTFOUND when from is
 * gone, ROOST_EIO.
 */
int fdio_link_or_copy(const char *from, const char *to, bool link, bool do_fsync);

/*
 * mkdir -p: the directory path and each missing parent, with mode 0700
 * (they hold mail, hashes and keys). 0 when each level was made or was
 * there already (as mkdir(2)'s EEXIST: an existing file counts);
 * ROOST_EINVAL for an empty path or one of PATH_MAX or more; ROOST_EIO with
 * errno set when a mkdir fails (*failed_r, when not NULL, then names the
 * directory that could not be made, owned by the caller; else NULL).
 */
int fdio_mkdir_p(const char *path, char **failed_r);

/*
 * Copy the tree at from into to (created; directories 0700), skipping
 * sockets, fifos and the top-level names in skip (NULL-terminated, may be
 * NULL); files by fdio_link_or_copy(link = false). Existing files in to
 * are left as they are. 0 or ROOST_EIO (errno set, *failed_r the path
 * when not NULL, owned by the caller).
 */
int fdio_copy_tree(const char *from, const char *to, const char *const *skip, bool do_fsync,
                   char **failed_r);

#endif
