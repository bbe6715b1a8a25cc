/* SPDX-License-Identifier: AGPL-3.0-or-later */
#include "admin.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <sodium.h>

#include "db.h"
#include "log.h"
#include "users.h"
#include "util.h"

/* --- effects --- */

static int grow(void **arr, size_t *cap, size_t n, size_t elem, idb_err *err)
{
	if (n < *cap)
		return 0;
	size_t ncap = *cap ? *cap * 2 : 8;
	void *p = realloc(*arr, ncap * elem);
	if (!p)
		return idb_err_set(err, IDB_EINTERNAL, NULL, "out of memory");
	*arr = p;
	*cap = ncap;
	return 0;
}

int idb_effects_user(idb_effects *fx, const char *user_id, idb_err *err)
{
	for (size_t i = 0; i < fx->nusers; i++)
		if (strcmp(fx->users[i], user_id) == 0)
			return 0;
	void *arr = fx->users;
	int rc = grow(&arr, &fx->capusers, fx->nusers, sizeof(*fx->users), err);
	fx->users = arr;
	if (rc != 0)
		return rc;
	idb_strlcpy(fx->users[fx->nusers++], user_id, sizeof(*fx->users));
	return 0;
}

int idb_effects_session(idb_effects *fx, const char *id_hash, idb_err *err)
{
	void *arr = fx->sessions;
	int rc = grow(&arr, &fx->capsessions, fx->nsessions, sizeof(*fx->sessions), err);
	fx->sessions = arr;
	if (rc != 0)
		return rc;
	idb_strlcpy(fx->sessions[fx->nsessions++], id_hash, sizeof(*fx->sessions));
	return 0;
}

int idb_effects_key(idb_effects *fx, const char *key_hash, idb_err *err)
{
	void *arr = fx->keys;
	int rc = grow(&arr, &fx->capkeys, fx->nkeys, sizeof(*fx->keys), err);
	fx->keys = arr;
	if (rc != 0)
		return rc;
	idb_strlcpy(fx->keys[fx->nkeys++], key_hash, sizeof(*fx->keys));
	return 0;
}

void idb_effects_clear(idb_effects *fx)
{
	if (!fx)
		return;
	free(fx->users);
	free(fx->sessions);
	free(fx->keys);
	memset(fx, 0, sizeof(*fx));
}

int idb_admin_end_sessions(idb_db *db, const char *user_id, idb_effects *fx, idb_err *err)
{
	static const char sql[] = "DELETE FROM sessions WHERE user_id = $1::uuid RETURNING id_hash";
	const char *p[] = {user_id};
	PGresult *res = idb_db_query(db, sql, 1, p, err);
	if (!res)
		return err ? err->code : IDB_EINTERNAL;
	int rc = 0;
	for (int i = 0; i < PQntuples(res) && rc == 0; i++)
		rc = idb_effects_session(fx, idb_db_str(res, i, 0), err);
	PQclear(res);
	return rc;
}

int idb_audit_write(idb_db *db, const idb_actor *a, const char *action, const char *target_type,
		    const char *target_id, const char *before_json, const char *after_json, idb_err *err)
{
	idb_audit_entry e = {.org_id = a->org_id,
			     .actor_id = a->user_id,
			     .actor_email = a->email ? a->email : "system",
			     .action = action,
			     .target_type = target_type,
			     .target_id = target_id,
			     .before_json = before_json,
			     .after_json = after_json,
			     .ip = a->ip && a->ip[0] ? a->ip : NULL,
			     .request_id = a->request_id};
	return idb_audit_record(db, &e, err);
}

/* --- small parsers --- */

bool idb_uuid_valid(const char *s)
{
	if (!s || strlen(s) != 36)
		return false;
	for (int i = 0; i < 36; i++) {
		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (s[i] != '-')
				return false;
		} else if (!isxdigit((unsigned char)s[i])) {
			return false;
		}
	}
	return true;
}

static bool digits(const char *s, int n, int *out)
{
	int v = 0;
	for (int i = 0; i < n; i++) {
		if (!isdigit((unsigned char)s[i]))
			return false;
		v = v * 10 + (s[i] - '0');
	}
	*out = v;
	return true;
}

bool idb_rfc3339_parse(const char *s, int64_t *out)
{
	if (!s)
		return false;
	size_t n = strlen(s);
	int y, mo, d, h = 0, mi = 0, sec = 0;
	if (n < 10 || !digits(s, 4, &y) || s[4] != '-' || !digits(s + 5, 2, &mo) || s[7] != '-' ||
	    !digits(s + 8, 2, &d))
		return false;
	const char *p = s + 10;
	long offset = 0;
	if (*p) {
		if (*p != 'T' && *p != 't' && *p != ' ')
			return false;
		p++;
		if (strlen(p) < 8 || !digits(p, 2, &h) || p[2] != ':' || !digits(p + 3, 2, &mi) || p[5] != ':' ||
		    !digits(p + 6, 2, &sec))
			return false;
		p += 8;
		if (*p == '.') {
			p++;
			if (!isdigit((unsigned char)*p))
				return false;
			while (isdigit((unsigned char)*p))
				p++;
		}
		if (*p == 'Z' || *p == 'z') {
			p++;
		} else if (*p == '+' || *p == '-' || *p == ' ') {
			/* ' ': a '+' that a query string decoded to a space */
			int sign = *p == '-' ? -1 : 1, oh, om;
			if (!digits(p + 1, 2, &oh) || p[3] != ':' || !digits(p + 4, 2, &om) || oh > 23 || om > 59)
				return false;
			offset = sign * (oh * 3600L + om * 60L);
			p += 6;
		} else {
			return false;
		}
		if (*p)
			return false;
	}
	if (y < 1970 || y > 9999 || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60)
		return false;
	static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
	if (d > mdays[mo - 1] || (mo == 2 && d == 29 && !leap))
		return false;
	struct tm tm = {.tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d, .tm_hour = h, .tm_min = mi,
			.tm_sec = sec > 59 ? 59 : sec};
	*out = (int64_t)timegm(&tm) - offset;
	return true;
}

void idb_time_human(int64_t t, char out[32])
{
	time_t tt = (time_t)t;
	struct tm tm;
	if (!gmtime_r(&tt, &tm) || strftime(out, 32, "%Y-%m-%d %H:%M UTC", &tm) == 0)
		snprintf(out, 32, "%lld", (long long)t);
}

char *idb_cursor_encode(const char *const *parts, size_t n)
{
	json_t *a = json_array();
	for (size_t i = 0; a && i < n; i++)
		json_array_append_new(a, json_string(parts[i] ? parts[i] : ""));
	char *js = a ? json_dumps(a, JSON_COMPACT) : NULL;
	json_decref(a);
	if (!js)
		return NULL;
	size_t len = strlen(js);
	size_t cap = sodium_base64_ENCODED_LEN(len, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	char *out = malloc(cap);
	if (out)
		sodium_bin2base64(out, cap, (const unsigned char *)js, len, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	free(js);
	return out;
}

bool idb_cursor_decode(const char *cursor, char (*parts)[256], size_t n)
{
	size_t clen = cursor ? strlen(cursor) : 0;
	if (clen == 0 || clen > 2048)
		return false;
	unsigned char buf[1600];
	size_t blen = 0;
	if (sodium_base642bin(buf, sizeof(buf) - 1, cursor, clen, NULL, &blen, NULL,
			      sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0)
		return false;
	json_t *a = json_loadb((const char *)buf, blen, 0, NULL);
	bool ok = a && json_is_array(a) && json_array_size(a) == n;
	for (size_t i = 0; ok && i < n; i++) {
		const char *v = json_string_value(json_array_get(a, i));
		ok = v && idb_strlcpy(parts[i], v, 256);
	}
	json_decref(a);
	return ok;
}

int idb_limit_parse(const char *s, int def, int max, int *out, idb_err *err)
{
	long long v = def;
	if (s && !idb_parse_long(s, 1, max, &v))
		return idb_err_set(err, IDB_EINVAL, "limit", "limit must be a whole number from 1 to %d", max);
	*out = (int)v;
	return 0;
}

int idb_password_check(const char *password, const char *email, long long min_len, idb_err *err)
{
	size_t n = password ? strlen(password) : 0;
	if (n == 0)
		return idb_err_set(err, IDB_EINVAL, "password", "Choose a password.");
	/* Length in characters, not bytes: count UTF-8 lead bytes. */
	long long chars = 0;
	for (const unsigned char *p = (const unsigned char *)password; *p; p++)
		chars += (*p & 0xC0) != 0x80;
	if (chars < min_len)
		return idb_err_set(err, IDB_EINVAL, "password", "Use at least %lld characters.", min_len);
	if (n > 1024)
		return idb_err_set(err, IDB_EINVAL, "password", "Use at most 1024 characters.");
	int lower = 0, upper = 0, digit = 0, other = 0;
	for (const unsigned char *p = (const unsigned char *)password; *p; p++) {
		if (*p < 0x20 || *p == 0x7f)
			return idb_err_set(err, IDB_EINVAL, "password", "The password contains control characters.");
		if (islower(*p))
			lower = 1;
		else if (isupper(*p))
			upper = 1;
		else if (isdigit(*p))
			digit = 1;
		else
			other = 1;
	}
	if (lower + upper + digit + other < 2)
		return idb_err_set(err, IDB_EINVAL, "password",
				   "Mix at least two kinds of characters (lower case, upper case, digits, symbols).");
	if (email && strcasecmp(password, email) == 0)
		return idb_err_set(err, IDB_EINVAL, "password", "The password must not be your e-mail address.");
	return 0;
}

json_t *idb_json_from_db(const char *text)
{
	json_error_t jerr;
	json_t *j = json_loads(text ? text : "", JSON_DECODE_ANY, &jerr);
	if (!j)
		idb_log_error("unparseable JSON from PostgreSQL: %s", jerr.text);
	return j;
}

char *idb_html_escape(const char *s)
{
	size_t n = 1;
	for (const char *p = s; *p; p++)
		n += strchr("<>&'\"", *p) ? 6 : 1;
	char *out = malloc(n);
	if (!out)
		return NULL;
	size_t o = 0;
	for (const char *p = s; *p; p++) {
		const char *rep = NULL;
		switch (*p) {
		case '<': rep = "&lt;"; break;
		case '>': rep = "&gt;"; break;
		case '&': rep = "&amp;"; break;
		case '\'': rep = "&#39;"; break;
		case '"': rep = "&quot;"; break;
		}
		if (rep) {
			size_t l = strlen(rep);
			memcpy(out + o, rep, l);
			o += l;
		} else {
			out[o++] = *p;
		}
	}
	out[o] = '\0';
	return out;
}

int idb_org_name(idb_db *db, const char *org_id, char out[201], idb_err *err)
{
	static const char sql[] = "SELECT name FROM organizations WHERE id = $1::uuid";
	const char *p[] = {org_id};
	PGresult *res = idb_db_query(db, sql, 1, p, err);
	if (!res)
		return err ? err->code : IDB_EINTERNAL;
	int rc = 0;
	if (PQntuples(res) == 1)
		idb_strlcpy(out, idb_db_str(res, 0, 0), 201);
	else
		rc = idb_err_set(err, IDB_ENOTFOUND, NULL, "organisation not found");
	PQclear(res);
	return rc;
}

int idb_db_json_one(idb_db *db, const char *sql, int nparams, const char *const *params, const char *what,
		    json_t **out, idb_err *err)
{
	*out = NULL;
	PGresult *res = idb_db_query(db, sql, nparams, params, err);
	if (!res)
		return err ? err->code : IDB_EINTERNAL;
	if (PQntuples(res) < 1) {
		PQclear(res);
		return idb_err_set(err, IDB_ENOTFOUND, NULL, "%s not found", what);
	}
	*out = idb_json_from_db(idb_db_str(res, 0, 0));
	PQclear(res);
	return *out ? 0 : idb_err_set(err, IDB_EINTERNAL, NULL, "bad JSON from the database");
}

int idb_db_json_page(idb_db *db, bool adhoc, const char *sql, int nparams, const char *const *params, int limit,
		     json_t **out, idb_err *err)
{
	*out = NULL;
	PGresult *res = adhoc ? idb_db_query_adhoc(db, sql, nparams, params, err)
			      : idb_db_query(db, sql, nparams, params, err);
	if (!res)
		return err ? err->code : IDB_EINTERNAL;
	int rows = PQntuples(res);
	json_t *items = json_array();
	int rc = items ? 0 : idb_err_set(err, IDB_EINTERNAL, NULL, "out of memory");
	for (int i = 0; rc == 0 && i < rows && i < limit; i++) {
		json_t *j = idb_json_from_db(idb_db_str(res, i, 0));
		if (!j || json_array_append_new(items, j) != 0)
			rc = idb_err_set(err, IDB_EINTERNAL, NULL, "bad JSON from the database");
	}
	json_t *next = json_null();
	if (rc == 0 && rows > limit) {
		const char *parts[] = {idb_db_str(res, limit - 1, 1), idb_db_str(res, limit - 1, 2)};
		char *c = idb_cursor_encode(parts, 2);
		if (c)
			next = json_string(c);
		else
			rc = idb_err_set(err, IDB_EINTERNAL, NULL, "out of memory");
		free(c);
	}
	PQclear(res);
	if (rc == 0)
		*out = json_pack("{so so}", "items", items, "next_cursor", next);
	else {
		json_decref(items);
		json_decref(next);
	}
	return rc == 0 && !*out ? idb_err_set(err, IDB_EINTERNAL, NULL, "out of memory") : rc;
}
