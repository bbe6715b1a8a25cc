/* SPDX-License-Identifier: AGPL-3.0-or-later */
#include "yamljson.h"

#include <stdlib.h>
#include <string.h>

#include <yaml.h>

#include "util.h"

#define MAX_DEPTH 32

static json_t *scalar(const yaml_node_t *n)
{
	const char *v = (const char *)n->data.scalar.value;
	size_t len = n->data.scalar.length;
	if (n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
		return json_stringn(v, len);
	if (len == 0 || !strcmp(v, "~") || !strcmp(v, "null"))
		return json_null();
	if (!strcmp(v, "true"))
		return json_true();
	if (!strcmp(v, "false"))
		return json_false();
	long long i;
	if (idb_parse_long(v, -9007199254740991LL, 9007199254740991LL, &i) && !(v[0] == '0' && v[1]))
		return json_integer(i);
	return json_stringn(v, len);
}

static json_t *convert(yaml_document_t *doc, yaml_node_t *n, int depth, long *budget, idb_err *err)
{
	if (--*budget < 0) {
		idb_err_set(err, IDB_EINVAL, NULL, "the document is too large (aliases?)");
		return NULL;
	}
	if (!n || depth > MAX_DEPTH) {
		idb_err_set(err, IDB_EINVAL, NULL, "the document is nested too deeply");
		return NULL;
	}
	switch (n->type) {
	case YAML_SCALAR_NODE:
		return scalar(n);
	case YAML_SEQUENCE_NODE: {
		json_t *a = json_array();
		for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top; it++) {
			json_t *v = convert(doc, yaml_document_get_node(doc, *it), depth + 1, budget, err);
			if (!v) {
				json_decref(a);
				return NULL;
			}
			json_array_append_new(a, v);
		}
		return a;
	}
	case YAML_MAPPING_NODE: {
		json_t *o = json_object();
		for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
			yaml_node_t *k = yaml_document_get_node(doc, p->key);
			if (!k || k->type != YAML_SCALAR_NODE) {
				idb_err_set(err, IDB_EINVAL, NULL, "line %zu: keys must be plain text",
					    k ? k->start_mark.line + 1 : 0);
				json_decref(o);
				return NULL;
			}
			char *key = strndup((const char *)k->data.scalar.value, k->data.scalar.length);
			if (key && json_object_get(o, key)) {
				idb_err_set(err, IDB_EINVAL, key, "line %zu: key %s appears twice", k->start_mark.line + 1, key);
				free(key);
				json_decref(o);
				return NULL;
			}
			json_t *v = key ? convert(doc, yaml_document_get_node(doc, p->value), depth + 1, budget, err) : NULL;
			if (!v) {
				free(key);
				json_decref(o);
				return NULL;
			}
			json_object_set_new(o, key, v);
			free(key);
		}
		return o;
	}
	default:
		idb_err_set(err, IDB_EINVAL, NULL, "unsupported YAML node");
		return NULL;
	}
}

int idb_yaml_to_json(const char *text, size_t len, json_t **out, idb_err *err)
{
	*out = NULL;
	yaml_parser_t parser;
	yaml_document_t doc;
	if (!yaml_parser_initialize(&parser))
		return idb_err_set(err, IDB_EINTERNAL, NULL, "out of memory");
	yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
	if (!yaml_parser_load(&parser, &doc)) {
		int rc = idb_err_set(err, IDB_EINVAL, NULL, "YAML error at line %zu, column %zu: %s",
				     parser.problem_mark.line + 1, parser.problem_mark.column + 1,
				     parser.problem ? parser.problem : "syntax error");
		yaml_parser_delete(&parser);
		return rc;
	}
	yaml_node_t *root = yaml_document_get_root_node(&doc);
	int rc = 0;
	if (!root) {
		rc = idb_err_set(err, IDB_EINVAL, NULL, "the file is empty");
	} else {
		long budget = 100000;
		*out = convert(&doc, root, 0, &budget, err);
		if (!*out)
			rc = err ? err->code : IDB_EINVAL;
	}
	yaml_document_delete(&doc);
	yaml_parser_delete(&parser);
	return rc;
}
