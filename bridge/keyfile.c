/* SPDX-License-Identifier: AGPL-3.0-or-later */
#include "keyfile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "log.h"

int idb_mkdir_parent(const char *path, idb_err *err)
{
	char dir[1024];
	if (snprintf(dir, sizeof(dir), "%s", path) >= (int)sizeof(dir))
		return idb_err_set(err, IDB_EINVAL, NULL, "path too long: %s", path);
	char *slash = strrchr(dir, '/');
	if (!slash || slash == dir)
		return 0;
	*slash = '\0';
	for (char *p = dir + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(dir, 0700) != 0 && errno != EEXIST)
			return idb_err_set(err, IDB_EINVAL, NULL, "cannot create %s: %s", dir, strerror(errno));
		*p = '/';
	}
	if (mkdir(dir, 0700) != 0 && errno != EEXIST)
		return idb_err_set(err, IDB_EINVAL, NULL, "cannot create %s: %s", dir, strerror(errno));
	return 0;
}

int idb_keyfile_load(const char *path, unsigned char out[IDB_SECRET_KEY_BYTES], idb_err *err)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 && errno == ENOENT) {
		int rc = idb_mkdir_parent(path, err);
		if (rc != 0)
			return rc;
		fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (fd < 0)
			return idb_err_set(err, IDB_EINVAL, "security.secret_key_file", "cannot create %s: %s", path,
					   strerror(errno));
		randombytes_buf(out, IDB_SECRET_KEY_BYTES);
		ssize_t w = write(fd, out, IDB_SECRET_KEY_BYTES);
		if (w != IDB_SECRET_KEY_BYTES || fsync(fd) != 0) {
			close(fd);
			unlink(path);
			return idb_err_set(err, IDB_EINVAL, "security.secret_key_file", "cannot write %s", path);
		}
		close(fd);
		idb_log_info("created a new secret key at %s (back it up: it seals secrets at rest)", path);
		return 0;
	}
	if (fd < 0)
		return idb_err_set(err, IDB_EINVAL, "security.secret_key_file", "cannot read %s: %s", path, strerror(errno));
	struct stat st;
	if (fstat(fd, &st) != 0 || (st.st_mode & 0077)) {
		close(fd);
		return idb_err_set(err, IDB_EINVAL, "security.secret_key_file",
				   "%s must not be readable by group or others (chmod 600)", path);
	}
	ssize_t n = read(fd, out, IDB_SECRET_KEY_BYTES);
	char extra;
	ssize_t more = read(fd, &extra, 1);
	close(fd);
	if (n != IDB_SECRET_KEY_BYTES || more != 0)
		return idb_err_set(err, IDB_EINVAL, "security.secret_key_file", "%s must hold exactly %d bytes", path,
				   IDB_SECRET_KEY_BYTES);
	return 0;
}

int idb_secret_seal(char **out, const unsigned char key[IDB_SECRET_KEY_BYTES], const char *plaintext, idb_err *err)
{
	*out = NULL;
	size_t plen = strlen(plaintext);
	size_t blen = crypto_secretbox_NONCEBYTES + crypto_secretbox_MACBYTES + plen;
	unsigned char *box = malloc(blen);
	size_t b64len = sodium_base64_ENCODED_LEN(blen, sodium_base64_VARIANT_ORIGINAL);
	char *txt = malloc(b64len + 3);
	if (!box || !txt) {
		free(box);
		free(txt);
		return idb_err_set(err, IDB_EINTERNAL, NULL, "out of memory");
	}
	randombytes_buf(box, crypto_secretbox_NONCEBYTES);
	crypto_secretbox_easy(box + crypto_secretbox_NONCEBYTES, (const unsigned char *)plaintext, plen, box, key);
	memcpy(txt, "v1:", 3);
	sodium_bin2base64(txt + 3, b64len, box, blen, sodium_base64_VARIANT_ORIGINAL);
	free(box);
	*out = txt;
	return 0;
}

int idb_secret_open(char **out, const unsigned char key[IDB_SECRET_KEY_BYTES], const char *sealed, idb_err *err)
{
	*out = NULL;
	if (!sealed || strncmp(sealed, "v1:", 3) != 0)
		return idb_err_set(err, IDB_EINVAL, NULL, "the sealed secret has an unknown format");
	size_t n = strlen(sealed + 3), blen = 0;
	unsigned char *box = malloc(n + 1);
	if (!box)
		return idb_err_set(err, IDB_EINTERNAL, NULL, "out of memory");
	if (sodium_base642bin(box, n + 1, sealed + 3, n, NULL, &blen, NULL, sodium_base64_VARIANT_ORIGINAL) != 0 ||
	    blen < crypto_secretbox_NONCEBYTES + crypto_secretbox_MACBYTES) {
		free(box);
		return idb_err_set(err, IDB_EINVAL, NULL, "the sealed secret is malformed");
	}
	size_t plen = blen - crypto_secretbox_NONCEBYTES - crypto_secretbox_MACBYTES;
	char *plain = malloc(plen + 1);
	if (!plain) {
		free(box);
		return idb_err_set(err, IDB_EINTERNAL, NULL, "out of memory");
	}
	if (crypto_secretbox_open_easy((unsigned char *)plain, box + crypto_secretbox_NONCEBYTES,
				       blen - crypto_secretbox_NONCEBYTES, box, key) != 0) {
		free(box);
		free(plain);
		return idb_err_set(err, IDB_EINVAL, NULL,
				   "the sealed secret cannot be opened with this deployment's secret key");
	}
	plain[plen] = '\0';
	free(box);
	*out = plain;
	return 0;
}
