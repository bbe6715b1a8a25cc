/* SPDX-License-Identifier: AGPL-3.0-or-later */
/* IdP presets: one YAML file per identity provider in a directory
 * (attribute-maps/presets/ by default), loaded once at start-up, validated by
 * compiling each preset's jit settings, then kept in memory (immutable, safe
 * to share between threads). A preset file holds:
 *
 *   name: entra-id            # must equal the file name without .yaml
 *   title: Microsoft Entra ID
 *   protocol: saml            # saml | oidc | any
 *   source: https://...       # the vendor page the attribute names come from
 *   notes: ...                # what the admin must configure at the IdP
 *   jit: { ... }              # the settings of attrmap.h
 *
 * Unlike the rest of attribute-maps/, this module reads files. */
#ifndef IDB_PRESETS_H
#define IDB_PRESETS_H

#include <stddef.h>

#include "attrmap.h"
#include "err.h"

typedef struct idb_presets idb_presets;

/* The build-time default directory (CMake IDB_PRESETS_DIR), borrowed. */
const char *idb_presets_default_dir(void);

/* Loads every *.yaml / *.yml file of dir (NULL: the default). A file that is
 * not valid YAML, lacks a key, has an unknown key, or whose jit does not
 * compile is an error: IDB_EINVAL with err->field the key ("jit.role_rules[1].role")
 * and err->msg starting with the file path. IDB_ENOTFOUND when dir cannot be
 * opened; IDB_EINTERNAL when out of memory. *out is the caller's
 * (idb_presets_free); NULL on failure. */
int idb_presets_load(idb_presets **out, const char *dir, idb_err *err);
/* NULL is a no-op. */
void idb_presets_free(idb_presets *p);

size_t idb_presets_count(const idb_presets *p);
/* Name of preset i (sorted by name), borrowed; NULL when out of range. */
const char *idb_presets_name(const idb_presets *p, size_t i);

/* All presets as JSON text for GET /api/v1/attribute-presets:
 * {"items": [{"name","title","protocol","source","notes","jit"}], "next_cursor": null}.
 * Borrowed; lives as long as p. */
const char *idb_presets_json(const idb_presets *p);

/* The settings for idb_attrmap_compile: preset name's jit with the
 * connection's overrides (a JSON object, NULL or "" for none) laid over it key
 * by key — an override replaces the preset's value whole (lists are not
 * appended to), and an override of null removes the key (back to the engine
 * default). name NULL or "" means no preset. *out_json is malloc'd (free()).
 * Errors: IDB_EINVAL field "preset" for an unknown name, field "jit" when
 * overrides is not a JSON object; IDB_EINTERNAL when out of memory. */
int idb_presets_merge(const idb_presets *p, const char *name, const char *overrides_json, char **out_json,
		      idb_err *err);

/* merge + idb_attrmap_compile in one step; errors of either. */
int idb_presets_compile(idb_attrmap **out, const idb_presets *p, const char *name, const char *overrides_json,
			idb_err *err);

#endif
