/* SPDX-License-Identifier: AGPL-3.0-or-later */
#include "err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static const struct {
	int code;
	const char *text;
} errtab[] = {
	{IDB_OK, "ok"},
	{IDB_ENOTFOUND, "not found"},
	{IDB_EEXISTS, "already exists"},
	{IDB_EINVAL, "invalid input"},
	{IDB_EAUTH, "authentication required or failed"},
	{IDB_EFORBIDDEN, "forbidden"},
	{IDB_EUNAVAIL, "service unavailable"},
	{IDB_ETIMEOUT, "timed out"},
	{IDB_ETOOBIG, "too large"},
	{IDB_ECONFLICT, "conflict"},
	{IDB_ELOCKED, "account locked"},
	{IDB_EINTERNAL, "internal error"},
	{IDB_EEXPIRED, "expired"},
};

const char *idb_strerror(int code)
{
	for (size_t i = 0; i < sizeof(errtab) / sizeof(errtab[0]); i++)
		if (errtab[i].code == code)
			return errtab[i].text;
	return "unknown error";
}

int idb_err_set(idb_err *err, int code, const char *field, const char *fmt, ...)
{
	if (!err)
		return code;
	err->code = code;
	snprintf(err->field, sizeof(err->field), "%s", field ? field : "");
	if (fmt) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
		va_end(ap);
	} else {
		snprintf(err->msg, sizeof(err->msg), "%s", idb_strerror(code));
	}
	return code;
}
