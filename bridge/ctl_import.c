/* SPDX-License-Identifier: AGPL-3.0-or-later */
#include "ctl_import.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "import.h"

#define MAX_FILE (2 * 1024 * 1024)

/* Reads at most max bytes of path into a malloc'd buffer. */
static int read_file(const char *path, size_t max, char **out, size_t *len, idb_err *err)
{
	*out = NULL;
	*len = 0;
	FILE *f = fopen(path, "rb");
	if (!f)
		return idb_err_set(err, IDB_EINVAL, "--file", "cannot open %s", path);
	char *text = malloc(max + 1);
	size_t n = text ? fread(text, 1, max, f) : 0;
	bool too_big = text && n == max && fgetc(f) != EOF;
	bool failed = text && ferror(f);
	fclose(f);
	if (!text)
		return idb_err_set(err, IDB_EINTERNAL, NULL, "out of memory");
	if (too_big || failed) {
		free(text);
		return idb_err_set(err, IDB_EINVAL, "--file", failed ? "cannot read the file" : "the file is larger than 2 MiB");
	}
	text[n] = '\0';
	*out = text;
	*len = n;
	return 0;
}

/* The import report: a line per row, then the counts. */
static void print_report(json_t *report)
{
	size_t i;
	json_t *r;
	json_array_foreach(json_object_get(report, "rows"), i, r)
	{
		const char *email = json_string_value(json_object_get(r, "email"));
		const char *msg = json_string_value(json_object_get(r, "message"));
		printf("line %lld  %s  %s%s%s\n", (long long)json_integer_value(json_object_get(r, "line")),
		       email && email[0] ? email : "(no email)", json_string_value(json_object_get(r, "action")),
		       msg && msg[0] ? "  " : "", msg ? msg : "");
	}
	printf("add %lld  skip %lld  error %lld\n", (long long)json_integer_value(json_object_get(report, "add")),
	       (long long)json_integer_value(json_object_get(report, "skip")),
	       (long long)json_integer_value(json_object_get(report, "error")));
}

int idb_ctl_users_import(idb_db *db, const idb_config *cfg, const char *org_id, const char *path, bool dry_run,
			 long *rejected, idb_err *err)
{
	*rejected = 0;
	char *text = NULL;
	size_t len = 0;
	int rc = read_file(path, MAX_FILE, &text, &len, err);
	if (rc != 0)
		return rc;
	/* The mail says "Your administrator invited you"; the audit log says
	 * idbridgectl. */
	idb_actor actor = {.org_id = org_id, .email = "idbridgectl", .name = "Your administrator"};
	json_t *preview = NULL, *result = NULL;
	rc = idb_import_preview(db, &actor, text, len, !dry_run, &preview, err);
	free(text);
	if (rc == 0 && !dry_run)
		rc = idb_import_confirm(db, cfg, &actor, json_string_value(json_object_get(preview, "id")), &result, err);
	if (rc == 0) {
		json_t *report = dry_run ? preview : result;
		print_report(report);
		if (dry_run)
			printf("dry run: nothing was written\n");
		else
			printf("import %s applied\n", json_string_value(json_object_get(result, "id")));
		*rejected = (long)json_integer_value(json_object_get(report, "error"));
	}
	json_decref(preview);
	json_decref(result);
	return rc;
}
