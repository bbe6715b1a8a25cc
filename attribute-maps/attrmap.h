/* SPDX-License-Identifier: AGPL-3.0-or-later */
/* The mapping engine: a verified identity (attribute name -> values, plus the
 * subject) becomes a profile (email, display name, groups) under a
 * connection's map. Pure: no I/O, no globals, so it is unit-testable and
 * fuzzable on its own. */
#ifndef IDB_ATTRMAP_H
#define IDB_ATTRMAP_H

#include <stdbool.h>
#include <stddef.h>

#include "err.h"

/* Bounds an identity must stay within; over them it is refused, never
 * truncated. */
#define IDB_ATTR_MAX_ATTRS 256
#define IDB_ATTR_MAX_VALUES 2000
#define IDB_ATTR_MAX_VALUE_LEN 2048

typedef struct idb_attr {
	char *name;
	char **values;
	size_t nvalues;
} idb_attr;

/* What a protocol layer verified. Owned by whoever built it; release with
 * idb_identity_clear. */
typedef struct idb_identity {
	char *connection_id;
	char *issuer;
	char *subject;        /* NameID / sub: the stable key */
	char *subject_format; /* NameID Format, or "" */
	bool email_verified;  /* OIDC email_verified (SAML: true) */
	idb_attr *attrs;
	size_t nattrs;
} idb_identity;

/* Adds one value to attribute name (created on first use). Refuses (IDB_ETOOBIG)
 * past the bounds above. */
int idb_identity_add(idb_identity *id, const char *name, const char *value, idb_err *err);
const idb_attr *idb_identity_get(const idb_identity *id, const char *name);
void idb_identity_clear(idb_identity *id);

/* A compiled per-connection map (opaque, immutable once built, shareable
 * between threads). Built from the connection's "jit" settings as JSON text:
 *   email_attribute, name_attribute, group_attribute: attribute names
 *     (defaults "email", "displayName", "memberOf");
 *   default_role (default "readonly"), max_role (default "admin");
 *   email_from_subject (bool): use the subject when its format is an e-mail.
 * Unknown keys are ignored here (other layers own them). */
typedef struct idb_attrmap idb_attrmap;

int idb_attrmap_compile(idb_attrmap **out, const char *settings_json, idb_err *err);
void idb_attrmap_free(idb_attrmap *m);

typedef struct idb_profile {
	char *email;        /* lowercased, trimmed */
	char *display_name; /* may be "" */
	char **groups;      /* idbridge group names, deduplicated */
	size_t ngroups;
	int role;           /* idb_role (0..3): a matching rule's (capped) or the default */
	bool role_from_rule; /* a role rule matched (so the role is re-applied on each login) */
	bool groups_overage; /* the IdP said the groups did not fit (Entra): leave IdP memberships alone */
} idb_profile;

/* Maps id under m into out. IDB_EINVAL when the e-mail is missing, not
 * single-valued or malformed (err->field "email"). out is released with
 * idb_profile_clear, also on failure. */
int idb_attrmap_apply(const idb_attrmap *m, const idb_identity *id, idb_profile *out, idb_err *err);
void idb_profile_clear(idb_profile *p);

#endif
