/* SPDX-License-Identifier: AGPL-3.0-or-later */
/* YAML document -> JSON value (for files that mirror an API object, such as
 * `idbridgectl connection apply`). Plain scalars become numbers, booleans
 * (true/false) or null (~, null, empty) where they read as such; quoted
 * scalars stay strings. Anchors/aliases are refused. */
#ifndef IDB_YAMLJSON_H
#define IDB_YAMLJSON_H

#include <jansson.h>

#include "err.h"

/* Parses the first document of text; *out is a new reference. IDB_EINVAL with
 * the line and column in err->msg on a syntax error. */
int idb_yaml_to_json(const char *text, size_t len, json_t **out, idb_err *err);

#endif
