/* SPDX-License-Identifier: AGPL-3.0-or-later */
/* Preset loader. YAML is read with libyaml's event API straight into jansson
 * values (the jit settings are free-form, which a libcyaml schema cannot
 * express); aliases are refused and duplicate keys are errors. */
#include "presets.h"

#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <yaml.h>

#include "util.h"

#ifndef IDB_PRESETS_DIR
#define IDB_PRESETS_DIR "attribute-maps/presets"
#endif

#define MAX_DEPTH 32
#define MAX_PRESETS 256

typedef struct preset {
	char *name;
	char *jit_text; /* compact JSON */
} preset;

struct idb_presets {
	preset *v;
	size_t n;
	char *list_json;
};

const char *idb_presets_default_dir(void)
{
	return IDB_PRESETS_DIR;
}

void idb_presets_free(idb_presets *p)
{
	if (!p)
		return;
	for (size_t i = 0; i < p->n; i++) {
		free(p->v[i].name);
		free(p->v[i].jit_text);
	}
	free(p->v);
	free(p->list_json);
	free(p);
}

size_t idb_presets_count(const idb_presets *p)
{
	return p ? p->n : 0;
}

const char *idb_presets_name(const idb_presets *p, size_t i)
{
	return p && i < p->n ? p->v[i].name : NULL;
}

const char *idb_presets_json(const idb_presets *p)
{
	return p ? p->list_json : NULL;
}

/* ------------------------------------------------------------ YAML -> JSON */

typedef struct yctx {
	yaml_parser_t parser;
	const char *path;
	idb_err *err;
} yctx;

static int y_next(yctx *c, yaml_event_t *ev)
{
	if (yaml_parser_parse(&c->parser, ev))
		return 0;
	return idb_err_set(c->err, IDB_EINVAL, NULL, "%s:%zu: %s %s", c->path, (size_t)c->parser.problem_mark.line + 1,
			   c->parser.problem ? c->parser.problem : "YAML error",
			   c->parser.context ? c->parser.context : "");
}

static bool plain_is(const char *s, const char *a, const char *b, const char *c)
{
	return strcmp(s, a) == 0 || strcmp(s, b) == 0 || strcmp(s, c) == 0;
}

/* YAML 1.2 core schema for plain scalars: booleans, null, integers; the rest
 * (and every quoted or tagged scalar) is a string. */
static json_t *scalar_json(const yaml_event_t *ev)
{
	const char *s = (const char *)ev->data.scalar.value;
	size_t len = ev->data.scalar.length;
	if (ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE && !ev->data.scalar.tag) {
		if (plain_is(s, "true", "True", "TRUE"))
			return json_true();
		if (plain_is(s, "false", "False", "FALSE"))
			return json_false();
		if (len == 0 || plain_is(s, "null", "Null", "NULL") || strcmp(s, "~") == 0)
			return json_null();
		long long v;
		if (idb_parse_long(s, -1000000000LL, 1000000000LL, &v))
			return json_integer(v);
	}
	return json_stringn(s, len);
}

static int y_node(yctx *c, yaml_event_t *ev, json_t **out, int depth)
{
	*out = NULL;
	size_t line = (size_t)ev->start_mark.line + 1;
	if (depth > MAX_DEPTH) {
		yaml_event_delete(ev);
		return idb_err_set(c->err, IDB_EINVAL, NULL, "%s:%zu: nested too deeply", c->path, line);
	}
	switch (ev->type) {
	case YAML_SCALAR_EVENT:
		*out = scalar_json(ev);
		yaml_event_delete(ev);
		return *out ? 0
			    : idb_err_set(c->err, IDB_EINVAL, NULL, "%s:%zu: a value is not valid UTF-8 text", c->path, line);
	case YAML_ALIAS_EVENT:
		yaml_event_delete(ev);
		return idb_err_set(c->err, IDB_EINVAL, NULL, "%s:%zu: YAML aliases are not allowed in presets", c->path,
				   line);
	case YAML_SEQUENCE_START_EVENT: {
		yaml_event_delete(ev);
		json_t *a = json_array();
		if (!a)
			return idb_err_set(c->err, IDB_EINTERNAL, NULL, "out of memory");
		for (;;) {
			yaml_event_t e;
			int rc = y_next(c, &e);
			if (rc) {
				json_decref(a);
				return rc;
			}
			if (e.type == YAML_SEQUENCE_END_EVENT) {
				yaml_event_delete(&e);
				break;
			}
			json_t *v;
			if ((rc = y_node(c, &e, &v, depth + 1))) {
				json_decref(a);
				return rc;
			}
			json_array_append_new(a, v);
		}
		*out = a;
		return 0;
	}
	case YAML_MAPPING_START_EVENT: {
		yaml_event_delete(ev);
		json_t *o = json_object();
		if (!o)
			return idb_err_set(c->err, IDB_EINTERNAL, NULL, "out of memory");
		for (;;) {
			yaml_event_t k;
			int rc = y_next(c, &k);
			if (rc) {
				json_decref(o);
				return rc;
			}
			if (k.type == YAML_MAPPING_END_EVENT) {
				yaml_event_delete(&k);
				break;
			}
			size_t kl = (size_t)k.start_mark.line + 1;
			if (k.type != YAML_SCALAR_EVENT) {
				yaml_event_delete(&k);
				json_decref(o);
				return idb_err_set(c->err, IDB_EINVAL, NULL, "%s:%zu: a key must be a plain string", c->path, kl);
			}
			char *key = strndup((const char *)k.data.scalar.value, k.data.scalar.length);
			yaml_event_delete(&k);
			if (!key) {
				json_decref(o);
				return idb_err_set(c->err, IDB_EINTERNAL, NULL, "out of memory");
			}
			if (json_object_get(o, key)) {
				rc = idb_err_set(c->err, IDB_EINVAL, key, "%s:%zu: duplicate key %.64s", c->path, kl, key);
				free(key);
				json_decref(o);
				return rc;
			}
			yaml_event_t ve;
			json_t *v = NULL;
			if ((rc = y_next(c, &ve)) == 0)
				rc = y_node(c, &ve, &v, depth + 1);
			if (rc == 0 && json_object_set_new(o, key, v) != 0)
				rc = idb_err_set(c->err, IDB_EINVAL, NULL, "%s:%zu: key %.64s is not valid UTF-8", c->path, kl,
						 key);
			free(key);
			if (rc) {
				json_decref(o);
				return rc;
			}
		}
		*out = o;
		return 0;
	}
	default:
		yaml_event_delete(ev);
		return idb_err_set(c->err, IDB_EINVAL, NULL, "%s:%zu: unexpected YAML structure", c->path, line);
	}
}

/* One document from f into *out. */
static int y_load(FILE *f, const char *path, json_t **out, idb_err *err)
{
	yctx c = {.path = path, .err = err};
	*out = NULL;
	if (!yaml_parser_initialize(&c.parser))
		return idb_err_set(err, IDB_EINTERNAL, NULL, "out of memory");
	yaml_parser_set_input_file(&c.parser, f);
	yaml_event_t ev;
	int rc = y_next(&c, &ev); /* stream start */
	if (rc == 0) {
		yaml_event_delete(&ev);
		rc = y_next(&c, &ev);
	}
	if (rc == 0 && ev.type != YAML_DOCUMENT_START_EVENT) {
		yaml_event_delete(&ev);
		rc = idb_err_set(err, IDB_EINVAL, NULL, "%s: empty file", path);
	} else if (rc == 0) {
		yaml_event_delete(&ev);
		if ((rc = y_next(&c, &ev)) == 0)
			rc = y_node(&c, &ev, out, 0);
	}
	if (rc == 0 && (rc = y_next(&c, &ev)) == 0) { /* document end */
		yaml_event_delete(&ev);
		if ((rc = y_next(&c, &ev)) == 0) {
			if (ev.type != YAML_STREAM_END_EVENT)
				rc = idb_err_set(err, IDB_EINVAL, NULL, "%s: one YAML document per preset file", path);
			yaml_event_delete(&ev);
		}
	}
	yaml_parser_delete(&c.parser);
	if (rc) {
		json_decref(*out);
		*out = NULL;
	}
	return rc;
}

/* --------------------------------------------------------------- validation */

static int need_string(json_t *doc, const char *key, const char *path, const char **out, idb_err *err)
{
	json_t *v = json_object_get(doc, key);
	if (!json_is_string(v) || json_string_length(v) == 0)
		return idb_err_set(err, IDB_EINVAL, key, "%s: %s must be a non-empty string", path, key);
	*out = json_string_value(v);
	return 0;
}

static int validate(json_t *doc, const char *path, const char *stem, idb_err *err)
{
	static const char *const keys[] = {"name", "title", "protocol", "source", "notes", "jit"};
	if (!json_is_object(doc))
		return idb_err_set(err, IDB_EINVAL, NULL, "%s: a preset must be a mapping", path);
	const char *k;
	json_t *v;
	json_object_foreach(doc, k, v)
	{
		bool ok = false;
		for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]) && !ok; i++)
			ok = strcmp(k, keys[i]) == 0;
		if (!ok)
			return idb_err_set(err, IDB_EINVAL, k, "%s: unknown key %.64s (expected name, title, protocol, source, "
							     "notes, jit)", path, k);
	}
	const char *name, *s;
	int rc = need_string(doc, "name", path, &name, err);
	if (rc)
		return rc;
	if (strcmp(name, stem) != 0)
		return idb_err_set(err, IDB_EINVAL, "name", "%s: name must be \"%s\" (the file name)", path, stem);
	for (const char *p = name; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-'))
			return idb_err_set(err, IDB_EINVAL, "name", "%s: name may hold only a-z, 0-9 and -", path);
	if ((rc = need_string(doc, "title", path, &s, err)) || (rc = need_string(doc, "notes", path, &s, err)))
		return rc;
	if ((rc = need_string(doc, "protocol", path, &s, err)))
		return rc;
	if (strcmp(s, "saml") && strcmp(s, "oidc") && strcmp(s, "any"))
		return idb_err_set(err, IDB_EINVAL, "protocol", "%s: protocol must be saml, oidc or any", path);
	if ((rc = need_string(doc, "source", path, &s, err)))
		return rc;
	if (strncmp(s, "https://", 8) != 0)
		return idb_err_set(err, IDB_EINVAL, "source", "%s: source must be the https:// URL of the vendor page", path);
	json_t *jit = json_object_get(doc, "jit");
	if (!json_is_object(jit))
		return idb_err_set(err, IDB_EINVAL, "jit", "%s: jit must be a mapping of attribute-map settings", path);
	json_object_foreach(jit, k, v)
	{
		if (!idb_attrmap_is_setting(k)) {
			char f[64];
			snprintf(f, sizeof(f), "jit.%.40s", k);
			return idb_err_set(err, IDB_EINVAL, f, "%s: jit.%.64s is not an attribute-map setting", path, k);
		}
	}
	char *text = json_dumps(jit, JSON_COMPACT);
	if (!text)
		return idb_err_set(err, IDB_EINTERNAL, NULL, "out of memory");
	idb_attrmap *m = NULL;
	idb_err e;
	idb_err_clear(&e);
	rc = idb_attrmap_compile(&m, text, &e);
	free(text);
	idb_attrmap_free(m);
	if (rc) {
		char f[64];
		snprintf(f, sizeof(f), "jit.%.58s", e.field);
		return idb_err_set(err, rc, f, "%s: jit.%s: %s", path, e.field, e.msg);
	}
	return 0;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool yaml_name(const char *n, size_t *stem_len)
{
	size_t l = strlen(n);
	if (n[0] == '.')
		return false;
	if (l > 5 && strcmp(n + l - 5, ".yaml") == 0) {
		*stem_len = l - 5;
		return true;
	}
	if (l > 4 && strcmp(n + l - 4, ".yml") == 0) {
		*stem_len = l - 4;
		return true;
	}
	return false;
}

int idb_presets_load(idb_presets **out, const char *dir, idb_err *err)
{
	*out = NULL;
	if (!dir)
		dir = IDB_PRESETS_DIR;
	DIR *d = opendir(dir);
	if (!d)
		return idb_err_set(err, IDB_ENOTFOUND, "presets_dir", "cannot open the presets directory %s", dir);
	char *names[MAX_PRESETS];
	size_t nn = 0;
	int rc = 0;
	struct dirent *de;
	while ((de = readdir(d)) != NULL && rc == 0) {
		size_t sl;
		if (!yaml_name(de->d_name, &sl))
			continue;
		if (nn == MAX_PRESETS)
			rc = idb_err_set(err, IDB_ETOOBIG, NULL, "more than %d preset files in %s", MAX_PRESETS, dir);
		else if (!(names[nn++] = strdup(de->d_name)))
			rc = idb_err_set(err, IDB_EINTERNAL, NULL, "out of memory");
	}
	closedir(d);
	idb_presets *p = NULL;
	json_t *items = NULL;
	if (rc == 0) {
		qsort(names, nn, sizeof(char *), cmp_str);
		p = calloc(1, sizeof(*p));
		items = json_array();
		if (!p || !items || (nn && !(p->v = calloc(nn, sizeof(preset)))))
			rc = idb_err_set(err, IDB_EINTERNAL, NULL, "out of memory");
	}
	for (size_t i = 0; i < nn && rc == 0; i++) {
		char path[PATH_MAX], stem[256];
		size_t sl;
		yaml_name(names[i], &sl);
		if (snprintf(path, sizeof(path), "%s/%s", dir, names[i]) >= (int)sizeof(path) || sl >= sizeof(stem)) {
			rc = idb_err_set(err, IDB_EINVAL, NULL, "preset path too long: %s/%s", dir, names[i]);
			break;
		}
		memcpy(stem, names[i], sl);
		stem[sl] = '\0';
		for (size_t k = 0; k < p->n && rc == 0; k++)
			if (strcmp(p->v[k].name, stem) == 0)
				rc = idb_err_set(err, IDB_EINVAL, "name", "%s: preset %s is defined twice", path, stem);
		if (rc)
			break;
		FILE *f = fopen(path, "rb");
		if (!f) {
			rc = idb_err_set(err, IDB_ENOTFOUND, NULL, "cannot open %s", path);
			break;
		}
		json_t *doc = NULL;
		rc = y_load(f, path, &doc, err);
		fclose(f);
		if (rc == 0)
			rc = validate(doc, path, stem, err);
		if (rc == 0) {
			preset *ps = &p->v[p->n];
			ps->name = strdup(stem);
			ps->jit_text = json_dumps(json_object_get(doc, "jit"), JSON_COMPACT);
			if (ps->name && ps->jit_text) {
				p->n++;
			} else {
				free(ps->name);
				free(ps->jit_text);
				memset(ps, 0, sizeof(*ps));
				rc = idb_err_set(err, IDB_EINTERNAL, NULL, "out of memory");
			}
		}
		if (rc == 0 && json_array_append_new(items, json_pack("{s:O, s:O, s:O, s:O, s:O, s:O}", "name",
								       json_object_get(doc, "name"), "title",
								       json_object_get(doc, "title"), "protocol",
								       json_object_get(doc, "protocol"), "source",
								       json_object_get(doc, "source"), "notes",
								       json_object_get(doc, "notes"), "jit",
								       json_object_get(doc, "jit"))) != 0)
			rc = idb_err_set(err, IDB_EINTERNAL, NULL, "out of memory");
		json_decref(doc);
	}
	if (rc == 0) {
		json_t *list = json_pack("{s:O, s:n}", "items", items, "next_cursor");
		p->list_json = list ? json_dumps(list, JSON_COMPACT) : NULL;
		json_decref(list);
		if (!p->list_json)
			rc = idb_err_set(err, IDB_EINTERNAL, NULL, "out of memory");
	}
	json_decref(items);
	for (size_t i = 0; i < nn; i++)
		free(names[i]);
	if (rc) {
		idb_presets_free(p);
		return rc;
	}
	*out = p;
	return 0;
}

/* ------------------------------------------------------------------ merge */

int idb_presets_merge(const idb_presets *p, const char *name, const char *overrides_json, char **out_json,
		      idb_err *err)
{
	*out_json = NULL;
	json_t *base = NULL;
	json_error_t je;
	if (name && *name) {
		for (size_t i = 0; p && i < p->n && !base; i++)
			if (strcmp(p->v[i].name, name) == 0 && !(base = json_loads(p->v[i].jit_text, 0, &je)))
				return idb_err_set(err, IDB_EINTERNAL, NULL, "out of memory");
		if (!base)
			return idb_err_set(err, IDB_EINVAL, "preset", "unknown preset \"%.64s\"", name);
	} else if (!(base = json_object())) {
		return idb_err_set(err, IDB_EINTERNAL, NULL, "out of memory");
	}
	json_t *ov = json_loads(overrides_json && *overrides_json ? overrides_json : "{}", JSON_REJECT_DUPLICATES, &je);
	if (!json_is_object(ov)) {
		json_decref(ov);
		json_decref(base);
		return idb_err_set(err, IDB_EINVAL, "jit", "the connection's jit settings must be a JSON object");
	}
	const char *k;
	json_t *v;
	int rc = 0;
	json_object_foreach(ov, k, v)
	{
		if (json_is_null(v))
			json_object_del(base, k);
		else if (json_object_set(base, k, v) != 0)
			rc = idb_err_set(err, IDB_EINTERNAL, NULL, "out of memory");
	}
	if (rc == 0 && !(*out_json = json_dumps(base, JSON_COMPACT)))
		rc = idb_err_set(err, IDB_EINTERNAL, NULL, "out of memory");
	json_decref(ov);
	json_decref(base);
	return rc;
}

int idb_presets_compile(idb_attrmap **out, const idb_presets *p, const char *name, const char *overrides_json,
			idb_err *err)
{
	*out = NULL;
	char *settings = NULL;
	int rc = idb_presets_merge(p, name, overrides_json, &settings, err);
	if (rc == 0)
		rc = idb_attrmap_compile(out, settings, err);
	free(settings);
	return rc;
}
