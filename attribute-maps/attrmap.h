/* SPDX-License-Identifier: AGPL-3.0-or-later */
/* The mapping engine: a verified identity (attribute name -> values, plus the
 * subject) becomes a profile (email, display name, groups, role) under a
 * connection's map. Pure: no I/O, no clock, no globals with state, so it is
 * unit-testable and fuzzable on its own. attribute-maps/README.md describes
 * the settings with examples; this header is the contract. */
#ifndef IDB_ATTRMAP_H
#define IDB_ATTRMAP_H

#include <stdbool.h>
#include <stddef.h>

#include "err.h"

/* Bounds an identity must stay within; over them it is refused (IDB_ETOOBIG),
 * never truncated. */
#define IDB_ATTR_MAX_ATTRS 256
#define IDB_ATTR_MAX_VALUES 2000
#define IDB_ATTR_MAX_VALUE_LEN 2048
/* Most groups a profile may carry after mapping. */
#define IDB_ATTR_MAX_GROUPS 1000

/* PCRE2 limits applied to every match of a configured regular expression, so
 * that a hostile value cannot make a pattern backtrack for long. A match that
 * hits one refuses the mapping (IDB_EINVAL, field = the setting holding the
 * pattern): failing closed, never treating "gave up" as "did not match". */
#define IDB_ATTRMAP_MATCH_LIMIT 100000u
#define IDB_ATTRMAP_DEPTH_LIMIT 1000u
#define IDB_ATTRMAP_HEAP_LIMIT_KIB 4096u

typedef struct idb_attr {
	char *name;
	char **values;
	size_t nvalues;
} idb_attr;

/* What a protocol layer verified. Owned by whoever built it; release with
 * idb_identity_clear. OIDC layers flatten nested claim objects with dots
 * ("_claim_names": {"groups": "src1"} becomes attribute "_claim_names.groups"
 * with value "src1") and JSON arrays into several values. */
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
 * past the bounds above; IDB_EINTERNAL when out of memory. */
int idb_identity_add(idb_identity *id, const char *name, const char *value, idb_err *err);
/* The attribute called name (exact, case-sensitive), borrowed; NULL if absent. */
const idb_attr *idb_identity_get(const idb_identity *id, const char *name);
/* Frees everything id owns and zeroes it; NULL is a no-op. */
void idb_identity_clear(idb_identity *id);

/* A compiled per-connection map: opaque, immutable once built, shareable
 * between threads (apply and explain only read it). Built from the
 * connection's "jit" settings as JSON text (a preset's jit merged with the
 * connection's overrides, see presets.h). Every key is optional:
 *
 *   email_attribute, name_attribute, group_attribute
 *       a string or an array of strings: candidate attribute names tried in
 *       order, the first one present (with at least one value) wins. A
 *       candidate "re:<PCRE2>" matches attribute names (first attribute in the
 *       identity's order whose name matches). Defaults "email", "displayName",
 *       "memberOf". An empty array means "none".
 *   email_from_subject (bool, default false)
 *       when no email candidate is present, use the subject if its NameID
 *       Format contains "emailAddress".
 *   name_template (string)
 *       used when no name_attribute candidate is present: "{givenName}
 *       {surname}" (first value of each; "{{" and "}}" are literal braces;
 *       missing attributes render empty, runs of spaces collapse).
 *   email_transforms, name_transforms, group_transforms (arrays, applied in
 *       order) of: "trim", "lowercase" (ASCII), "dn_to_cn",
 *       {"regex_extract": {"pattern": P, "group": N}} (a value that does not
 *       match is dropped; N defaults to 1, or 0 without capture groups),
 *       {"regex_replace": {"pattern": P, "replacement": R}} (every match; R may
 *       use $N, ${N} and $$), {"split": {"delimiter": D}} (literal, one value
 *       becomes several).
 *       The email is then always trimmed, lowercased and checked; names and
 *       groups are trimmed; empty group values are dropped and duplicates
 *       removed (first occurrence kept).
 *   group_include, group_exclude (arrays of patterns)
 *       a pattern is an exact, case-sensitive string or "re:<PCRE2>"
 *       (unanchored: write ^...$ to anchor). Applied after the transforms: a
 *       group must match one include pattern (when any are given) and no
 *       exclude pattern. Filtered-out groups neither map nor grant roles.
 *   group_mapping (array of {"idp": pattern, "group": name})
 *       many-to-many: every rule whose pattern matches a group value adds its
 *       "group"; a regex rule may use $N / ${N} (capture N) in "group".
 *       Groups matched by no rule pass through unchanged unless
 *       group_mapping_only (bool, default false) is true.
 *   role_rules (array of {"group": pattern, "role": role})
 *       the FIRST rule (in array order) matching any group — either the value
 *       after transforms and filters or a name it mapped to — sets the role,
 *       capped at max_role. No match: default_role.
 *   default_role (default "readonly"), max_role (default "admin"): one of
 *       readonly, train, configure, admin; default_role must not exceed max_role.
 *   groups_overage_attributes (array of attribute names)
 *       attributes whose presence means the IdP left groups out because there
 *       were too many (profile.groups_overage). Default:
 *       "http://schemas.microsoft.com/claims/groups.link",
 *       "_claim_names.groups", "hasgroups" (a value "false" or "" does not count).
 *
 * Unknown keys are ignored here (other layers own them, e.g. "enabled",
 * "sync_groups"); idb_attrmap_is_setting names the keys this engine reads.
 * Errors: IDB_EINVAL with err->field naming the setting ("role_rules[2].group",
 * "group_transforms[0].regex_replace.pattern") and a message (for a regular
 * expression, PCRE2's message and the offset); IDB_EINTERNAL when out of
 * memory. *out is NULL on failure. */
typedef struct idb_attrmap idb_attrmap;

int idb_attrmap_compile(idb_attrmap **out, const char *settings_json, idb_err *err);
/* NULL is a no-op. */
void idb_attrmap_free(idb_attrmap *m);
/* True when key is a top-level setting the engine reads. */
bool idb_attrmap_is_setting(const char *key);

typedef struct idb_profile {
	char *email;        /* lowercased, trimmed */
	char *display_name; /* may be "" */
	char **groups;      /* idbridge group names after filters and mapping, deduplicated */
	size_t ngroups;
	int role;            /* idb_role (0..3): a matching rule's (capped) or the default */
	bool role_from_rule; /* a role rule matched (so the role is re-applied on each login) */
	/* The IdP said the user has more groups than it would send (Entra ID
	 * overage: groups.link / _claim_names.groups / hasgroups). groups is then
	 * NOT the user's membership list and role rules could not see it: the JIT
	 * layer must leave IdP-managed memberships (and a rule-derived role)
	 * untouched instead of treating this as "no groups". */
	bool groups_overage;
} idb_profile;

/* Maps id under m into out (which need not be initialised). Errors:
 * IDB_EINVAL when the e-mail is missing, not single-valued or malformed
 * (field "email"), when a value is not valid UTF-8 (field "email", "name" or
 * "groups"), or when a regular expression hits its match limits (field = the
 * setting); IDB_ETOOBIG when the identity or the result is over a bound
 * (field "attributes" or "groups"); IDB_EINTERNAL when out of memory. out is
 * released with idb_profile_clear, also on failure (it is then empty). */
int idb_attrmap_apply(const idb_attrmap *m, const idb_identity *id, idb_profile *out, idb_err *err);
/* Frees what p owns and zeroes it; NULL is a no-op. */
void idb_profile_clear(idb_profile *p);

/* True when the map reads attribute attr_name (as a source of a profile
 * field, in the name template or as an overage marker): its values may be
 * shown to an admin; others are shown by name only. */
bool idb_attrmap_mentions(const idb_attrmap *m, const char *attr_name);

/* The admin's dry run: maps id under m and describes how, as JSON text in
 * *out_json (malloc'd; release with free()):
 *   {"email": {"candidates", "source", "input", "steps", "value"},
 *    "display_name": {...same, "source" may be "name_template"},
 *    "groups": {"candidates", "source", "input", "steps", "values",
 *               "filtered_out": [{"value", "reason"}],
 *               "mapping": [{"value", "rules": [{"rule", "group"}], "outcome"}],
 *               "result"},
 *    "groups_overage": {"detected", "attribute"},
 *    "role": {"rule", "matched_group", "rule_role", "max_role", "capped",
 *             "default_role", "role", "role_from_rule"},
 *    "unused_attributes": [names only],
 *    "profile": {...} on success, or "error": {"code", "field", "message"}}.
 * A mapping failure is reported inside the JSON and still returns 0; the
 * return is negative (IDB_EINTERNAL) only when the JSON could not be built. */
int idb_attrmap_explain(const idb_attrmap *m, const idb_identity *id, char **out_json, idb_err *err);

#endif
