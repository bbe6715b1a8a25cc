/* SPDX-License-Identifier: AGPL-3.0-or-later */
/* Error codes and the caller-provided error record every layer uses. */
#ifndef IDB_ERR_H
#define IDB_ERR_H

#include <stddef.h>

enum {
	IDB_OK = 0,
	IDB_ENOTFOUND = -1,  /* the thing asked for does not exist (in this org) */
	IDB_EEXISTS = -2,    /* unique constraint: it exists already */
	IDB_EINVAL = -3,     /* bad input; err->field names the field */
	IDB_EAUTH = -4,      /* credentials missing or wrong */
	IDB_EFORBIDDEN = -5, /* authenticated but not allowed */
	IDB_EUNAVAIL = -6,   /* a dependency (PostgreSQL, Redis, IdP) is away */
	IDB_ETIMEOUT = -7,   /* a dependency did not answer in time */
	IDB_ETOOBIG = -8,    /* input over a size bound */
	IDB_ECONFLICT = -9,  /* state changed underneath; retry or re-read */
	IDB_ELOCKED = -10,   /* account locked after failed logins */
	IDB_EINTERNAL = -11, /* a bug or an unexpected library failure */
	IDB_EEXPIRED = -12,  /* it existed but its time is over (an import preview) */
};

typedef struct idb_err {
	int code;
	char field[64];
	char msg[256];
} idb_err;

/* Text for a code, from one static table; never NULL. */
const char *idb_strerror(int code);

/* Records code, optional field and a printf-style message in err (which may be
 * NULL) and returns code, so that `return idb_err_set(err, ...)` reads well. */
int idb_err_set(idb_err *err, int code, const char *field, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static inline void idb_err_clear(idb_err *err)
{
	if (err) {
		err->code = 0;
		err->field[0] = '\0';
		err->msg[0] = '\0';
	}
}

#endif
