/* SPDX-License-Identifier: AGPL-3.0-or-later */
/* /api/v1/import…: bulk import of users from CSV (issue 7). The handlers
 * check the request's shape; parsing, rules, storage and the transaction
 * live in provisioning/ (csv_import.c, import.c). */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "api_admin.h"
#include "csv_import.h"
#include "import.h"

typedef struct icall {
	idb_actor a;
	const idb_config *cfg;
	const char *id;
	const char *data;
	size_t len;
	char new_id[37];
} icall;

static void icall_init(idb_req *req, icall *c)
{
	memset(c, 0, sizeof(*c));
	idb_api_actor(req, &c->a);
	c->cfg = idb_req_app(req)->cfg;
	c->id = idb_req_param(req, "id");
}

int idb_api_import_template(idb_req *req)
{
	const char *t = idb_csv_import_template();
	idb_resp_header(req, "Content-Disposition", "attachment; filename=\"users-import-template.csv\"");
	return idb_resp_body(req, 200, "text/csv; charset=utf-8", t, strlen(t));
}

/* The media types a CSV upload arrives with (browsers send the last one for
 * .csv files on Windows); only UTF-8 (or ASCII) is accepted. */
static bool csv_content_type(const char *ct)
{
	static const char *const ok[] = {"text/csv", "application/csv", "text/plain", "application/vnd.ms-excel"};
	if (!ct)
		return false;
	char type[64];
	size_t n = strcspn(ct, ";");
	while (n && isspace((unsigned char)ct[n - 1]))
		n--;
	while (n && isspace((unsigned char)*ct)) {
		ct++;
		n--;
	}
	if (n >= sizeof(type))
		return false;
	for (size_t i = 0; i < n; i++)
		type[i] = (char)tolower((unsigned char)ct[i]);
	type[n] = '\0';
	bool known = false;
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
		known = known || strcmp(type, ok[i]) == 0;
	if (!known)
		return false;
	const char *cs = strchr(ct, ';');
	while (cs) {
		cs++;
		while (isspace((unsigned char)*cs))
			cs++;
		if (strncasecmp(cs, "charset=", 8) == 0) {
			const char *v = cs + 8;
			if (*v == '"')
				v++;
			if (strncasecmp(v, "utf-8", 5) != 0 && strncasecmp(v, "utf8", 4) != 0 &&
			    strncasecmp(v, "us-ascii", 8) != 0)
				return false;
		}
		cs = strchr(cs, ';');
	}
	return true;
}

static int do_preview(idb_db *db, void *ctx, idb_effects *fx, json_t **out, idb_err *err)
{
	icall *c = ctx;
	(void)fx;
	int rc = idb_import_preview(db, &c->a, c->data, c->len, true, out, err);
	if (rc == 0)
		snprintf(c->new_id, sizeof(c->new_id), "%s", json_string_value(json_object_get(*out, "id")));
	return rc;
}

int idb_api_import_preview(idb_req *req)
{
	if (!csv_content_type(idb_req_header(req, "Content-Type")))
		return idb_resp_problem(req, 415, "unsupported-media-type", "Unsupported media type",
					"Send the CSV file itself as the request body with Content-Type: text/csv "
					"(UTF-8), e.g. curl --data-binary @users.csv -H 'Content-Type: text/csv'.",
					NULL);
	icall c;
	icall_init(req, &c);
	c.data = idb_req_body(req, &c.len);
	if (!c.data)
		c.data = "";
	int rc = idb_api_run(req, 201, do_preview, &c);
	if (c.new_id[0]) {
		char loc[80];
		snprintf(loc, sizeof(loc), "/api/v1/import/%s", c.new_id);
		idb_resp_header(req, "Location", loc);
	}
	return rc;
}

static int do_get(idb_db *db, void *ctx, idb_effects *fx, json_t **out, idb_err *err)
{
	icall *c = ctx;
	(void)fx;
	return idb_import_get(db, c->a.org_id, c->id, out, err);
}

int idb_api_import_get(idb_req *req)
{
	icall c;
	icall_init(req, &c);
	return idb_api_run(req, 200, do_get, &c);
}

static int do_confirm(idb_db *db, void *ctx, idb_effects *fx, json_t **out, idb_err *err)
{
	icall *c = ctx;
	(void)fx; /* new pending users have nothing cached */
	return idb_import_confirm(db, c->cfg, &c->a, c->id, out, err);
}

int idb_api_import_confirm(idb_req *req)
{
	icall c;
	icall_init(req, &c);
	return idb_api_run(req, 200, do_confirm, &c);
}

int idb_api_import_errors_csv(idb_req *req)
{
	icall c;
	icall_init(req, &c);
	idb_app *app = idb_req_app(req);
	idb_err err;
	idb_err_clear(&err);
	idb_db *db;
	char *csv = NULL;
	size_t len = 0;
	int rc = idb_store_acquire(app->store, &db, &err);
	if (rc == 0) {
		rc = idb_import_errors_csv(db, c.a.org_id, c.id, &csv, &len, &err);
		idb_store_release(db);
	}
	if (rc != 0)
		return idb_resp_error(req, &err);
	char disp[120];
	snprintf(disp, sizeof(disp), "attachment; filename=\"import-%s-errors.csv\"", c.id);
	idb_resp_header(req, "Content-Disposition", disp);
	rc = idb_resp_body(req, 200, "text/csv; charset=utf-8", csv, len);
	free(csv);
	return rc;
}
