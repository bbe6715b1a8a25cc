/* SPDX-License-Identifier: AGPL-3.0-or-later */
#include "attrmap.h"

#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "util.h"

static const char *const role_names[] = {"readonly", "train", "configure", "admin"};

static int role_index(const char *s)
{
	for (int i = 0; s && i < 4; i++)
		if (strcmp(s, role_names[i]) == 0)
			return i;
	return -1;
}

struct idb_attrmap {
	char *email_attribute;
	char *name_attribute;
	char *group_attribute;
	bool email_from_subject;
	int default_role;
	int max_role;
};

void idb_attrmap_free(idb_attrmap *m)
{
	if (!m)
		return;
	free(m->email_attribute);
	free(m->name_attribute);
	free(m->group_attribute);
	free(m);
}

static int str_setting(json_t *o, const char *key, const char *def, char **out, idb_err *err)
{
	json_t *v = json_object_get(o, key);
	if (v && !json_is_string(v))
		return idb_err_set(err, IDB_EINVAL, key, "must be a string");
	const char *s = v ? json_string_value(v) : def;
	if (!*s || strlen(s) > 512)
		return idb_err_set(err, IDB_EINVAL, key, "must be 1-512 characters");
	*out = strdup(s);
	return *out ? 0 : idb_err_set(err, IDB_EINTERNAL, NULL, "out of memory");
}

static int role_setting(json_t *o, const char *key, int def, int *out, idb_err *err)
{
	json_t *v = json_object_get(o, key);
	if (!v || json_is_null(v)) {
		*out = def;
		return 0;
	}
	int r = json_is_string(v) ? role_index(json_string_value(v)) : -1;
	if (r < 0)
		return idb_err_set(err, IDB_EINVAL, key, "must be one of readonly, train, configure, admin");
	*out = r;
	return 0;
}

int idb_attrmap_compile(idb_attrmap **out, const char *settings_json, idb_err *err)
{
	*out = NULL;
	json_error_t jerr;
	json_t *o = json_loads(settings_json && *settings_json ? settings_json : "{}", 0, &jerr);
	if (!o || !json_is_object(o)) {
		json_decref(o);
		return idb_err_set(err, IDB_EINVAL, "jit", "settings must be a JSON object");
	}
	idb_attrmap *m = calloc(1, sizeof(*m));
	int rc = m ? 0 : idb_err_set(err, IDB_EINTERNAL, NULL, "out of memory");
	if (rc == 0)
		rc = str_setting(o, "email_attribute", "email", &m->email_attribute, err);
	if (rc == 0)
		rc = str_setting(o, "name_attribute", "displayName", &m->name_attribute, err);
	if (rc == 0)
		rc = str_setting(o, "group_attribute", "memberOf", &m->group_attribute, err);
	if (rc == 0)
		rc = role_setting(o, "default_role", 0, &m->default_role, err);
	if (rc == 0)
		rc = role_setting(o, "max_role", 3, &m->max_role, err);
	if (rc == 0 && m->default_role > m->max_role)
		rc = idb_err_set(err, IDB_EINVAL, "default_role", "must not be above max_role");
	if (rc == 0)
		m->email_from_subject = json_is_true(json_object_get(o, "email_from_subject"));
	json_decref(o);
	if (rc != 0) {
		idb_attrmap_free(m);
		return rc;
	}
	*out = m;
	return 0;
}

int idb_identity_add(idb_identity *id, const char *name, const char *value, idb_err *err)
{
	if (strlen(value) > IDB_ATTR_MAX_VALUE_LEN)
		return idb_err_set(err, IDB_ETOOBIG, name, "a value of attribute %.64s is longer than %d bytes", name,
				   IDB_ATTR_MAX_VALUE_LEN);
	idb_attr *a = NULL;
	for (size_t i = 0; i < id->nattrs; i++)
		if (strcmp(id->attrs[i].name, name) == 0)
			a = &id->attrs[i];
	if (!a) {
		if (id->nattrs >= IDB_ATTR_MAX_ATTRS)
			return idb_err_set(err, IDB_ETOOBIG, NULL, "more than %d attributes", IDB_ATTR_MAX_ATTRS);
		idb_attr *na = realloc(id->attrs, (id->nattrs + 1) * sizeof(idb_attr));
		if (!na)
			return idb_err_set(err, IDB_EINTERNAL, NULL, "out of memory");
		id->attrs = na;
		a = &id->attrs[id->nattrs];
		memset(a, 0, sizeof(*a));
		if (!(a->name = strdup(name)))
			return idb_err_set(err, IDB_EINTERNAL, NULL, "out of memory");
		id->nattrs++;
	}
	if (a->nvalues >= IDB_ATTR_MAX_VALUES)
		return idb_err_set(err, IDB_ETOOBIG, name, "attribute %.64s has more than %d values", name,
				   IDB_ATTR_MAX_VALUES);
	char **nv = realloc(a->values, (a->nvalues + 1) * sizeof(char *));
	if (!nv)
		return idb_err_set(err, IDB_EINTERNAL, NULL, "out of memory");
	a->values = nv;
	if (!(a->values[a->nvalues] = strdup(value)))
		return idb_err_set(err, IDB_EINTERNAL, NULL, "out of memory");
	a->nvalues++;
	return 0;
}

const idb_attr *idb_identity_get(const idb_identity *id, const char *name)
{
	for (size_t i = 0; name && i < id->nattrs; i++)
		if (strcmp(id->attrs[i].name, name) == 0)
			return &id->attrs[i];
	return NULL;
}

void idb_identity_clear(idb_identity *id)
{
	if (!id)
		return;
	for (size_t i = 0; i < id->nattrs; i++) {
		for (size_t k = 0; k < id->attrs[i].nvalues; k++)
			free(id->attrs[i].values[k]);
		free(id->attrs[i].values);
		free(id->attrs[i].name);
	}
	free(id->attrs);
	free(id->connection_id);
	free(id->issuer);
	free(id->subject);
	free(id->subject_format);
	memset(id, 0, sizeof(*id));
}

static char *trimmed_dup(const char *s)
{
	while (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n')
		s++;
	size_t n = strlen(s);
	while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r' || s[n - 1] == '\n'))
		n--;
	return strndup(s, n);
}

int idb_attrmap_apply(const idb_attrmap *map, const idb_identity *id, idb_profile *out, idb_err *err)
{
	memset(out, 0, sizeof(*out));
	out->role = map->default_role;
	const char *ea = map->email_attribute;
	const char *na = map->name_attribute;
	const char *ga = map->group_attribute;
	const idb_attr *e = idb_identity_get(id, ea);
	const char *email = NULL;
	if (e) {
		if (e->nvalues != 1)
			return idb_err_set(err, IDB_EINVAL, "email", "attribute %s must have exactly one value (got %zu)", ea,
					   e->nvalues);
		email = e->values[0];
	} else if (map->email_from_subject && id->subject && id->subject_format &&
		   strstr(id->subject_format, "emailAddress")) {
		email = id->subject;
	}
	if (!email)
		return idb_err_set(err, IDB_EINVAL, "email", "the identity provider sent no %s attribute", ea);
	out->email = trimmed_dup(email);
	if (!out->email)
		return idb_err_set(err, IDB_EINTERNAL, NULL, "out of memory");
	idb_str_lower(out->email);
	if (!idb_email_valid(out->email)) {
		idb_profile_clear(out);
		return idb_err_set(err, IDB_EINVAL, "email", "attribute %s is not a valid e-mail address", ea);
	}
	const idb_attr *n = idb_identity_get(id, na);
	out->display_name = trimmed_dup(n && n->nvalues ? n->values[0] : "");
	if (!out->display_name) {
		idb_profile_clear(out);
		return idb_err_set(err, IDB_EINTERNAL, NULL, "out of memory");
	}
	const idb_attr *g = idb_identity_get(id, ga);
	if (g && g->nvalues) {
		out->groups = calloc(g->nvalues, sizeof(char *));
		if (!out->groups) {
			idb_profile_clear(out);
			return idb_err_set(err, IDB_EINTERNAL, NULL, "out of memory");
		}
		for (size_t i = 0; i < g->nvalues; i++) {
			char *v = trimmed_dup(g->values[i]);
			if (!v) {
				idb_profile_clear(out);
				return idb_err_set(err, IDB_EINTERNAL, NULL, "out of memory");
			}
			bool dup = !*v;
			for (size_t k = 0; k < out->ngroups && !dup; k++)
				dup = strcmp(out->groups[k], v) == 0;
			if (dup)
				free(v);
			else
				out->groups[out->ngroups++] = v;
		}
	}
	return 0;
}

void idb_profile_clear(idb_profile *p)
{
	if (!p)
		return;
	free(p->email);
	free(p->display_name);
	for (size_t i = 0; i < p->ngroups; i++)
		free(p->groups[i]);
	free(p->groups);
	memset(p, 0, sizeof(*p));
}
