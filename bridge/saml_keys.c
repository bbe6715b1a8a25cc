/* SPDX-License-Identifier: AGPL-3.0-or-later */
#include "saml_keys.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <sodium.h>

#include "keyfile.h"
#include "log.h"

static char *read_file(const char *path, size_t max)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	char *buf = malloc(max + 1);
	size_t n = buf ? fread(buf, 1, max, f) : 0;
	fclose(f);
	if (!buf)
		return NULL;
	buf[n] = '\0';
	return buf;
}

static int write_file(const char *path, const char *data, size_t len, mode_t mode, idb_err *err)
{
	int rc = idb_mkdir_parent(path, err);
	if (rc != 0)
		return rc;
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
	if (fd < 0)
		return idb_err_set(err, IDB_EINVAL, NULL, "cannot create %s: %s", path, strerror(errno));
	ssize_t w = write(fd, data, len);
	int sync = fsync(fd);
	close(fd);
	if (w != (ssize_t)len || sync != 0) {
		unlink(path);
		return idb_err_set(err, IDB_EINVAL, NULL, "cannot write %s", path);
	}
	return 0;
}

static char *bio_text(BIO *b)
{
	char *data = NULL;
	long n = BIO_get_mem_data(b, &data);
	char *out = n > 0 ? strndup(data, (size_t)n) : NULL;
	return out;
}

static int generate(const char *cn, char **key_pem, char **cert_pem, idb_err *err)
{
	int rc = IDB_EINTERNAL;
	EVP_PKEY *pkey = EVP_RSA_gen(3072);
	X509 *x = X509_new();
	BIO *kb = BIO_new(BIO_s_mem()), *cb = BIO_new(BIO_s_mem());
	if (!pkey || !x || !kb || !cb)
		goto done;
	X509_set_version(x, 2);
	unsigned char serial[16];
	FILE *ur = fopen("/dev/urandom", "rb");
	if (!ur || fread(serial, 1, sizeof(serial), ur) != sizeof(serial)) {
		if (ur)
			fclose(ur);
		goto done;
	}
	fclose(ur);
	serial[0] &= 0x7f;
	BIGNUM *bn = BN_bin2bn(serial, sizeof(serial), NULL);
	if (!bn)
		goto done;
	BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x));
	BN_free(bn);
	X509_gmtime_adj(X509_getm_notBefore(x), 0);
	X509_gmtime_adj(X509_getm_notAfter(x), 10L * 365 * 24 * 3600);
	X509_set_pubkey(x, pkey);
	X509_NAME *name = X509_get_subject_name(x);
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1, -1, 0);
	X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8, (const unsigned char *)"idbridge SAML SP", -1, -1, 0);
	X509_set_issuer_name(x, name);
	if (!X509_sign(x, pkey, EVP_sha256()))
		goto done;
	if (!PEM_write_bio_PrivateKey(kb, pkey, NULL, NULL, 0, NULL, NULL) || !PEM_write_bio_X509(cb, x))
		goto done;
	*key_pem = bio_text(kb);
	*cert_pem = bio_text(cb);
	if (*key_pem && *cert_pem)
		rc = 0;
done:
	if (rc != 0)
		idb_err_set(err, IDB_EINTERNAL, NULL, "cannot generate the SAML SP key pair");
	BIO_free(kb);
	BIO_free(cb);
	X509_free(x);
	EVP_PKEY_free(pkey);
	return rc;
}

int idb_saml_keys_load(const char *key_file, const char *cert_file, const char *cn, char **key_pem, char **cert_pem,
		       idb_err *err)
{
	*key_pem = *cert_pem = NULL;
	bool have_key = access(key_file, F_OK) == 0, have_cert = access(cert_file, F_OK) == 0;
	if (have_key != have_cert)
		return idb_err_set(err, IDB_EINVAL, have_key ? "saml.sp_cert_file" : "saml.sp_key_file",
				   "%s is missing while %s exists; give both or neither", have_key ? cert_file : key_file,
				   have_key ? key_file : cert_file);
	if (!have_key) {
		int rc = generate(cn, key_pem, cert_pem, err);
		if (rc == 0)
			rc = write_file(key_file, *key_pem, strlen(*key_pem), 0600, err);
		if (rc == 0)
			rc = write_file(cert_file, *cert_pem, strlen(*cert_pem), 0644, err);
		if (rc != 0) {
			free(*key_pem);
			free(*cert_pem);
			*key_pem = *cert_pem = NULL;
			return rc;
		}
		idb_log_info("generated the SAML SP key pair (%s, %s)", key_file, cert_file);
		return 0;
	}
	*key_pem = read_file(key_file, 64 * 1024);
	*cert_pem = read_file(cert_file, 64 * 1024);
	if (!*key_pem || !*cert_pem || !strstr(*key_pem, "PRIVATE KEY") || !strstr(*cert_pem, "CERTIFICATE")) {
		free(*key_pem);
		free(*cert_pem);
		*key_pem = *cert_pem = NULL;
		return idb_err_set(err, IDB_EINVAL, "saml.sp_key_file", "cannot read a PEM key from %s and certificate from %s",
				   key_file, cert_file);
	}
	return 0;
}

char *idb_pem_cert_body(const char *cert_pem)
{
	const char *b = strstr(cert_pem, "-----BEGIN CERTIFICATE-----");
	const char *e = b ? strstr(b, "-----END CERTIFICATE-----") : NULL;
	if (!b || !e)
		return NULL;
	b += strlen("-----BEGIN CERTIFICATE-----");
	char *out = malloc((size_t)(e - b) + 1);
	if (!out)
		return NULL;
	size_t o = 0;
	for (const char *p = b; p < e; p++)
		if (*p != '\n' && *p != '\r' && *p != ' ')
			out[o++] = *p;
	out[o] = '\0';
	return out;
}

char *idb_cert_b64_pubkey_pem(const char *b64)
{
	size_t n = strlen(b64), der_len = 0;
	unsigned char *der = malloc(n + 1);
	if (!der)
		return NULL;
	char *out = NULL;
	if (sodium_base642bin(der, n + 1, b64, n, " \t\r\n", &der_len, NULL, sodium_base64_VARIANT_ORIGINAL) == 0) {
		const unsigned char *p = der;
		X509 *x = d2i_X509(NULL, &p, (long)der_len);
		EVP_PKEY *k = x ? X509_get0_pubkey(x) : NULL;
		BIO *b = k ? BIO_new(BIO_s_mem()) : NULL;
		if (b && PEM_write_bio_PUBKEY(b, k) == 1)
			out = bio_text(b);
		BIO_free(b);
		X509_free(x);
	}
	free(der);
	return out;
}
