/* SPDX-License-Identifier: AGPL-3.0-or-later */
/* idbridgectl: the operator CLI. Exit codes: 0 ok, 1 failure, 2 usage or
 * invalid input, 3 already exists. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apikeys.h"
#include "config.h"
#include "connections.h"
#include "connsave.h"
#include "ctl_import.h"
#include "presets.h"
#include "saml.h"
#include "yamljson.h"
#include "log.h"
#include "roles.h"
#include "store.h"
#include "users.h"
#include "util.h"

enum { EX_OK = 0, EX_FAIL = 1, EX_USAGE = 2, EX_EXISTS = 3 };

static void usage(FILE *f)
{
	fprintf(f,
		"usage: idbridgectl [--config FILE] COMMAND\n"
		"  migrate                                         apply pending database migrations\n"
		"  org create SLUG [--name NAME]                   create an organisation\n"
		"  admin create --org SLUG --email E [--name N] [--password-stdin]\n"
		"                                                  create an active admin; prints a generated\n"
		"                                                  password unless one is given on stdin\n"
		"  apikey create --org SLUG --email E --name N [--scopes a,b] [--expires-days D]\n"
		"                                                  create an API key for a user; prints it once\n"
		"  connection apply --org SLUG --file CONN.yaml    create or update (by slug) an IdP connection from a\n"
		"                                                  YAML file holding the API's connection object\n"
		"  users import --org SLUG --file users.csv [--dry-run]\n"
		"                                                  import users from CSV (header email,name,role,groups;\n"
		"                                                  API.md); prints a line per row and the counts. Valid\n"
		"                                                  rows are created and invited even when others are\n"
		"                                                  rejected; --dry-run writes nothing. Exit 0: no row\n"
		"                                                  rejected, 2: rows rejected or the file refused\n"
		"environment: IDBRIDGE_DATABASE_URL and the other IDBRIDGE_* variables override the file.\n"
		"exit codes: 0 ok, 1 failure, 2 usage or invalid input, 3 already exists\n");
}

/* --flag VALUE lookup among argv[from..argc). */
static const char *opt(int argc, char **argv, int from, const char *name)
{
	for (int i = from; i < argc; i++)
		if (!strcmp(argv[i], name))
			return i + 1 < argc ? argv[i + 1] : NULL;
	return NULL;
}

static bool flag(int argc, char **argv, int from, const char *name)
{
	for (int i = from; i < argc; i++)
		if (!strcmp(argv[i], name))
			return true;
	return false;
}

static int exit_for(int code)
{
	switch (code) {
	case 0: return EX_OK;
	case IDB_EEXISTS: return EX_EXISTS;
	case IDB_EINVAL:
	case IDB_ENOTFOUND: return EX_USAGE;
	default: return EX_FAIL;
	}
}

static int fail(const idb_err *err)
{
	fprintf(stderr, "idbridgectl: %s%s%s\n", err->field[0] ? err->field : "", err->field[0] ? ": " : "", err->msg);
	return exit_for(err->code);
}

static int audit(idb_db *db, const char *org_id, const char *action, const char *type, const char *id,
		 const char *after, idb_err *err)
{
	idb_audit_entry e = {.org_id = org_id,
			     .actor_email = "idbridgectl",
			     .action = action,
			     .target_type = type,
			     .target_id = id,
			     .after_json = after};
	return idb_audit_record(db, &e, err);
}

static int cmd_org_create(idb_db *db, int argc, char **argv, int from, idb_err *err)
{
	if (from >= argc || argv[from][0] == '-') {
		usage(stderr);
		return EX_USAGE;
	}
	const char *slug = argv[from];
	const char *name = opt(argc, argv, from + 1, "--name");
	char id[37];
	int rc = idb_db_begin(db, err);
	if (rc == 0)
		rc = idb_org_create(db, slug, name ? name : slug, id, err);
	if (rc == 0)
		rc = audit(db, id, "org.create", "organization", id, NULL, err);
	if (rc == 0)
		rc = idb_db_commit(db, err);
	if (rc != 0)
		return fail(err);
	printf("organisation %s created (id %s)\n", slug, id);
	return EX_OK;
}

static int read_password_stdin(char *out, size_t outsz, idb_err *err)
{
	if (!fgets(out, (int)outsz, stdin))
		return idb_err_set(err, IDB_EINVAL, "password", "no password on standard input");
	out[strcspn(out, "\r\n")] = '\0';
	return 0;
}

static int cmd_admin_create(idb_db *db, const idb_config *cfg, int argc, char **argv, int from, idb_err *err)
{
	const char *org = opt(argc, argv, from, "--org"), *email = opt(argc, argv, from, "--email");
	const char *name = opt(argc, argv, from, "--name");
	if (!org || !email) {
		usage(stderr);
		return EX_USAGE;
	}
	char password[1100];
	bool generated = !flag(argc, argv, from, "--password-stdin");
	if (generated) {
		idb_random_token(password, sizeof(password), 18);
	} else {
		if (read_password_stdin(password, sizeof(password), err) != 0)
			return fail(err);
		if ((long long)strlen(password) < cfg->password_min_length) {
			idb_err_set(err, IDB_EINVAL, "password", "must be at least %lld characters", cfg->password_min_length);
			return fail(err);
		}
	}
	char org_id[37], user_id[37];
	int rc = idb_org_find(db, org, org_id, err);
	if (rc != 0)
		return fail(err);
	idb_user_new u = {.org_id = org_id,
			  .email = email,
			  .name = name,
			  .role = IDB_ROLE_ADMIN,
			  .status = "active",
			  .password = password,
			  .created_via = "cli"};
	rc = idb_db_begin(db, err);
	if (rc == 0)
		rc = idb_user_create(db, &u, user_id, err);
	char after[400];
	snprintf(after, sizeof(after), "{\"role\":\"admin\",\"status\":\"active\"}");
	if (rc == 0)
		rc = audit(db, org_id, "user.create", "user", user_id, after, err);
	if (rc == 0)
		rc = idb_db_commit(db, err);
	if (rc != 0)
		return fail(err);
	printf("email: %s\n", email);
	if (generated)
		printf("password: %s\n", password);
	return EX_OK;
}

static int cmd_apikey_create(idb_db *db, int argc, char **argv, int from, idb_err *err)
{
	const char *org = opt(argc, argv, from, "--org"), *email = opt(argc, argv, from, "--email");
	const char *name = opt(argc, argv, from, "--name"), *scopes = opt(argc, argv, from, "--scopes");
	const char *days = opt(argc, argv, from, "--expires-days");
	if (!org || !email || !name) {
		usage(stderr);
		return EX_USAGE;
	}
	long long d = 0;
	if (days && !idb_parse_long(days, 1, 3650, &d)) {
		idb_err_set(err, IDB_EINVAL, "--expires-days", "must be a number of days between 1 and 3650");
		return fail(err);
	}
	char org_id[37], user_id[37], key[IDB_APIKEY_MAX], key_id[37];
	int rc = idb_org_find(db, org, org_id, err);
	if (rc == 0)
		rc = idb_user_find_by_email(db, org_id, email, user_id, err);
	if (rc != 0)
		return fail(err);
	rc = idb_db_begin(db, err);
	if (rc == 0)
		rc = idb_apikey_create(db, org_id, user_id, name, scopes, d ? idb_now_s() + d * 86400 : 0, key, key_id, err);
	if (rc == 0)
		rc = audit(db, org_id, "apikey.create", "api_key", key_id, NULL, err);
	if (rc == 0)
		rc = idb_db_commit(db, err);
	if (rc != 0)
		return fail(err);
	printf("%s\n", key);
	fprintf(stderr, "API key %s created for %s; it is shown only this once.\n", key_id, email);
	return EX_OK;
}

static int cmd_connection_apply(idb_db *db, const idb_config *cfg, int argc, char **argv, int from, idb_err *err)
{
	const char *org = opt(argc, argv, from, "--org"), *file = opt(argc, argv, from, "--file");
	if (!org || !file) {
		usage(stderr);
		return EX_USAGE;
	}
	FILE *f = fopen(file, "rb");
	if (!f) {
		idb_err_set(err, IDB_EINVAL, "--file", "cannot open %s", file);
		return fail(err);
	}
	char *text = malloc(2 * 1024 * 1024 + 1);
	size_t n = text ? fread(text, 1, 2 * 1024 * 1024, f) : 0;
	bool too_big = text && n == 2 * 1024 * 1024 && fgetc(f) != EOF;
	fclose(f);
	if (!text || too_big) {
		free(text);
		idb_err_set(err, IDB_EINVAL, "--file", "%s is larger than 2 MiB", file);
		return fail(err);
	}
	json_t *obj = NULL;
	int rc = idb_yaml_to_json(text, n, &obj, err);
	free(text);
	if (rc != 0) {
		fprintf(stderr, "idbridgectl: %s: %s\n", file, err->msg);
		return EX_USAGE;
	}
	char org_id[37], id[37] = "";
	if ((rc = idb_org_find(db, org, org_id, err)) != 0) {
		json_decref(obj);
		return fail(err);
	}
	/* Same slug in this organisation: update it. */
	char slug[64] = "";
	idb_strlcpy(slug, json_string_value(json_object_get(obj, "slug")) ? json_string_value(json_object_get(obj, "slug")) : "",
		    sizeof(slug));
	idb_connection existing = {0};
	bool update = slug[0] && idb_connection_by_slug(db, slug, &existing, NULL) == 0 && !strcmp(existing.org_id, org_id);
	json_t *errors = json_array();
	idb_actor actor = {.email = "idbridgectl"};
	idb_presets *presets = NULL;
	rc = idb_presets_load(&presets, cfg->mapping_presets_dir[0] ? cfg->mapping_presets_dir : NULL, err);
	if (rc != 0) {
		idb_connection_clear(&existing);
		json_decref(obj);
		json_decref(errors);
		return fail(err);
	}
	rc = idb_connsave(db, cfg, presets, org_id, update ? existing.id : NULL, obj, &actor, errors, id, err);
	idb_presets_free(presets);
	idb_connection_clear(&existing);
	json_decref(obj);
	if (rc != 0) {
		size_t i;
		json_t *e;
		json_array_foreach(errors, i, e)
			fprintf(stderr, "idbridgectl: %s: %s: %s\n", file, json_string_value(json_object_get(e, "field")),
				json_string_value(json_object_get(e, "message")));
		if (!json_array_size(errors))
			fprintf(stderr, "idbridgectl: %s: %s\n", file, err->msg);
		json_decref(errors);
		return exit_for(rc);
	}
	json_decref(errors);
	printf("connection %s %s (id %s)\n", slug, update ? "updated" : "created", id);
	return EX_OK;
}

static int cmd_users_import(idb_db *db, const idb_config *cfg, int argc, char **argv, int from, idb_err *err)
{
	const char *org = opt(argc, argv, from, "--org"), *file = opt(argc, argv, from, "--file");
	if (!org || !file) {
		usage(stderr);
		return EX_USAGE;
	}
	char org_id[37];
	int rc = idb_org_find(db, org, org_id, err);
	if (rc != 0)
		return fail(err);
	long rejected = 0;
	rc = idb_ctl_users_import(db, cfg, org_id, file, flag(argc, argv, from, "--dry-run"), &rejected, err);
	if (rc != 0) {
		fprintf(stderr, "idbridgectl: %s: %s\n", file, err->msg);
		return exit_for(rc);
	}
	return rejected > 0 ? EX_USAGE : EX_OK;
}

int main(int argc, char **argv)
{
	const char *config_path = getenv("IDBRIDGE_CONFIG");
	int i = 1;
	if (i < argc && (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h"))) {
		usage(stdout);
		return EX_OK;
	}
	if (i + 1 < argc && !strcmp(argv[i], "--config")) {
		config_path = argv[i + 1];
		i += 2;
	}
	if (i >= argc) {
		usage(stderr);
		return EX_USAGE;
	}
	idb_err err;
	idb_err_clear(&err);
	idb_config *cfg;
	if (idb_config_load(&cfg, config_path, &err) != 0) {
		fprintf(stderr, "config error: %s%s%s\n", err.field, err.field[0] ? ": " : "", err.msg);
		return EX_USAGE;
	}
	idb_log_set_level(IDB_LOG_WARN);
	int ex = EX_FAIL;
	idb_store *st = NULL;
	idb_db *db = NULL;
	if (idb_crypto_init() != 0 || idb_saml_global_init(&err) != 0) {
		fprintf(stderr, "idbridgectl: library initialisation failed\n");
		goto out;
	}
	if (idb_store_open(&st, cfg->database_url, 1, (int)cfg->db_connect_timeout_s, 60000, &err) != 0) {
		ex = fail(&err);
		goto out;
	}
	int applied = 0;
	if (idb_store_migrate(st, &applied, &err) != 0) {
		ex = fail(&err);
		goto out;
	}
	const char *cmd = argv[i], *sub = i + 1 < argc ? argv[i + 1] : "";
	if (!strcmp(cmd, "migrate")) {
		printf("migrations applied: %d (database is up to date)\n", applied);
		ex = EX_OK;
		goto out;
	}
	if (idb_store_acquire(st, &db, &err) != 0) {
		ex = fail(&err);
		goto out;
	}
	if (!strcmp(cmd, "org") && !strcmp(sub, "create"))
		ex = cmd_org_create(db, argc, argv, i + 2, &err);
	else if (!strcmp(cmd, "admin") && !strcmp(sub, "create"))
		ex = cmd_admin_create(db, cfg, argc, argv, i + 2, &err);
	else if (!strcmp(cmd, "apikey") && !strcmp(sub, "create"))
		ex = cmd_apikey_create(db, argc, argv, i + 2, &err);
	else if (!strcmp(cmd, "connection") && !strcmp(sub, "apply"))
		ex = cmd_connection_apply(db, cfg, argc, argv, i + 2, &err);
	else if (!strcmp(cmd, "users") && !strcmp(sub, "import"))
		ex = cmd_users_import(db, cfg, argc, argv, i + 2, &err);
	else {
		usage(stderr);
		ex = EX_USAGE;
	}
out:
	idb_store_release(db);
	idb_store_free(st);
	idb_config_free(cfg);
	idb_saml_global_shutdown();
	return ex;
}
