/* SPDX-License-Identifier: AGPL-3.0-or-later */
/* The mapping engine. Settings are parsed and every regular expression is
 * compiled once (idb_attrmap_compile); applying a map only reads it, so one
 * compiled map serves all threads. apply and explain share one code path:
 * explain passes a JSON trace that the steps fill in, apply passes NULL. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "attrmap.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>
#include <pcre2.h>

#include "util.h"

/* Must follow idb_role (provisioning/roles.h): this layer sits below it. */
static const char *const role_names[] = {"readonly", "train", "configure", "admin"};
#define NROLES 4
#define ROLE_LIST "readonly, train, configure, admin"

/* Bounds on the settings themselves. */
#define MAX_CANDIDATES 32
#define MAX_NAME_LEN 512
#define MAX_TRANSFORMS 16
#define MAX_PATTERNS 256
#define MAX_RULES 1000
#define MAX_PATTERN_LEN 1024
#define MAX_GROUP_NAME_LEN 256
#define MAX_DELIM_LEN 16
#define FIELD_LEN 64

static const char *const settings_keys[] = {
	"email_attribute", "name_attribute",  "group_attribute", "email_from_subject", "name_template",
	"email_transforms", "name_transforms", "group_transforms", "group_include",     "group_exclude",
	"group_mapping",   "group_mapping_only", "role_rules",    "default_role",       "max_role",
	"groups_overage_attributes",
};

static const char *const default_overage[] = {
	"http://schemas.microsoft.com/claims/groups.link",
	"_claim_names.groups",
	"hasgroups",
};

bool idb_attrmap_is_setting(const char *key)
{
	for (size_t i = 0; key && i < sizeof(settings_keys) / sizeof(settings_keys[0]); i++)
		if (strcmp(key, settings_keys[i]) == 0)
			return true;
	return false;
}

static int role_index(const char *s)
{
	for (int i = 0; s && i < NROLES; i++)
		if (strcmp(s, role_names[i]) == 0)
			return i;
	return -1;
}

/* ---------------------------------------------------------------- types */

typedef struct rx {
	pcre2_code *code;
	uint32_t ncap;
	bool jit; /* JIT-compiled: matched with pcre2_jit_match (no per-call checks) */
} rx;

/* A candidate attribute name, exact or "re:" (matched against names). */
typedef struct cand {
	char *name;
	bool is_re;
	rx re;
	char field[FIELD_LEN];
} cand;

typedef struct candlist {
	cand *v;
	size_t n;
} candlist;

/* An exact string or "re:<PCRE2>" matched against group values. */
typedef struct pat {
	char *text;
	bool is_re;
	rx re;
	char field[FIELD_LEN];
} pat;

enum tkind { TF_TRIM, TF_LOWER, TF_DN_TO_CN, TF_EXTRACT, TF_REPLACE, TF_SPLIT };
static const char *const tf_names[] = {"trim", "lowercase", "dn_to_cn", "regex_extract", "regex_replace", "split"};

typedef struct tf {
	enum tkind k;
	rx re;
	uint32_t group;
	char *arg; /* replacement or delimiter */
	char field[FIELD_LEN];
} tf;

typedef struct tflist {
	tf *v;
	size_t n;
} tflist;

typedef struct tpart {
	char *text;
	bool is_ref;
} tpart;

typedef struct maprule {
	pat p;
	char *group;
	bool expand; /* regex rule whose group uses $N */
} maprule;

typedef struct rolerule {
	pat p;
	int role;
} rolerule;

/* Exact rule keys sorted by (key, rule index); a hash table points at the
 * first entry of each key's run. */
typedef struct keyidx {
	const char *key;
	uint32_t idx;
} keyidx;

typedef struct hidx {
	uint64_t *hash;
	uint32_t *pos1; /* position + 1 in the keyidx array; 0 = empty slot */
	size_t cap;
} hidx;

struct idb_attrmap {
	candlist email_c, name_c, group_c;
	bool email_from_subject;
	tflist email_t, name_t, group_t;
	tpart *tmpl;
	size_t ntmpl;
	pat *incl, *excl;
	size_t nincl, nexcl;
	maprule *maps;
	size_t nmaps;
	bool mapping_only;
	keyidx *map_exact;
	size_t nmap_exact;
	hidx map_h;
	uint32_t *map_re;
	size_t nmap_re;
	rx map_pf; /* all regex mapping rules as one alternation, or no code */
	rolerule *roles;
	size_t nroles;
	keyidx *role_exact;
	size_t nrole_exact;
	hidx role_h;
	uint32_t *role_re;
	size_t nrole_re;
	rx role_pf;
	char **overage;
	size_t noverage;
	int default_role, max_role;
	uint32_t max_ncap;
	pcre2_match_context *mctx;
};

/* ------------------------------------------------------------- helpers */

static uint64_t hash_str(const char *s);

static bool utf8_valid(const unsigned char *s, size_t n)
{
	size_t i = 0;
	while (i < n) {
		unsigned char c = s[i];
		if (c < 0x80) {
			i++;
			continue;
		}
		size_t len;
		uint32_t cp;
		if (c >= 0xc2 && c <= 0xdf) {
			len = 2;
			cp = c & 0x1f;
		} else if (c >= 0xe0 && c <= 0xef) {
			len = 3;
			cp = c & 0x0f;
		} else if (c >= 0xf0 && c <= 0xf4) {
			len = 4;
			cp = c & 0x07;
		} else {
			return false;
		}
		if (n - i < len)
			return false;
		for (size_t k = 1; k < len; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return false;
			cp = (cp << 6) | (s[i + k] & 0x3f);
		}
		if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10ffff ||
		    (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		i += len;
	}
	return true;
}

static bool is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static char *trimmed_dup(const char *s)
{
	while (is_space(*s))
		s++;
	size_t n = strlen(s);
	while (n && is_space(s[n - 1]))
		n--;
	return strndup(s, n);
}

/* a + b into dst[FIELD_LEN] (field names are short; truncation is harmless). */
static void field_join3(char *dst, const char *a, const char *b, const char *c)
{
	if (snprintf(dst, FIELD_LEN, "%s%s%s", a, b, c) >= FIELD_LEN)
		dst[FIELD_LEN - 1] = '\0';
}

static void field_join(char *dst, const char *a, const char *b)
{
	field_join3(dst, a, b, "");
}

/* "key[i]" or "key[i].sub" into dst[FIELD_LEN]. */
static void set_field(char *dst, const char *key, size_t i, const char *sub)
{
	if (snprintf(dst, FIELD_LEN, "%s[%zu]%s", key, i, sub ? sub : "") >= FIELD_LEN)
		dst[FIELD_LEN - 1] = '\0';
}

/* ------------------------------------------------------- regex compile */

static int rx_compile(idb_attrmap *m, rx *x, const char *pattern, const char *field, idb_err *err)
{
	if (strlen(pattern) > MAX_PATTERN_LEN)
		return idb_err_set(err, IDB_EINVAL, field, "the regular expression is longer than %d characters",
				   MAX_PATTERN_LEN);
	int ec;
	PCRE2_SIZE off;
	x->code = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_NEVER_BACKSLASH_C, &ec,
				&off, NULL);
	if (!x->code) {
		PCRE2_UCHAR buf[160];
		if (pcre2_get_error_message(ec, buf, sizeof(buf)) < 0)
			idb_strlcpy((char *)buf, "unknown error", sizeof(buf));
		return idb_err_set(err, IDB_EINVAL, field, "invalid regular expression at offset %zu: %s", (size_t)off,
				   (const char *)buf);
	}
	/* JIT is an optimisation only; the interpreter is used when it fails. */
	x->jit = pcre2_jit_compile(x->code, PCRE2_JIT_COMPLETE) == 0;
	if (pcre2_pattern_info(x->code, PCRE2_INFO_CAPTURECOUNT, &x->ncap) != 0)
		x->ncap = 0;
	if (x->ncap > m->max_ncap)
		m->max_ncap = x->ncap;
	return 0;
}

static void rx_free(rx *x)
{
	pcre2_code_free(x->code);
	x->code = NULL;
}

/* ------------------------------------------------------------ freeing */

static void cands_free(candlist *c)
{
	for (size_t i = 0; i < c->n; i++) {
		free(c->v[i].name);
		rx_free(&c->v[i].re);
	}
	free(c->v);
}

static void pat_free(pat *p)
{
	free(p->text);
	rx_free(&p->re);
}

static void tfs_free(tflist *t)
{
	for (size_t i = 0; i < t->n; i++) {
		rx_free(&t->v[i].re);
		free(t->v[i].arg);
	}
	free(t->v);
}

void idb_attrmap_free(idb_attrmap *m)
{
	if (!m)
		return;
	cands_free(&m->email_c);
	cands_free(&m->name_c);
	cands_free(&m->group_c);
	tfs_free(&m->email_t);
	tfs_free(&m->name_t);
	tfs_free(&m->group_t);
	for (size_t i = 0; i < m->ntmpl; i++)
		free(m->tmpl[i].text);
	free(m->tmpl);
	for (size_t i = 0; i < m->nincl; i++)
		pat_free(&m->incl[i]);
	free(m->incl);
	for (size_t i = 0; i < m->nexcl; i++)
		pat_free(&m->excl[i]);
	free(m->excl);
	for (size_t i = 0; i < m->nmaps; i++) {
		pat_free(&m->maps[i].p);
		free(m->maps[i].group);
	}
	free(m->maps);
	free(m->map_exact);
	free(m->map_re);
	for (size_t i = 0; i < m->nroles; i++)
		pat_free(&m->roles[i].p);
	free(m->roles);
	free(m->role_exact);
	free(m->role_re);
	rx_free(&m->map_pf);
	free(m->map_h.hash);
	free(m->map_h.pos1);
	free(m->role_h.hash);
	free(m->role_h.pos1);
	rx_free(&m->role_pf);
	for (size_t i = 0; i < m->noverage; i++)
		free(m->overage[i]);
	free(m->overage);
	pcre2_match_context_free(m->mctx);
	free(m);
}

/* ------------------------------------------------------ settings parse */

#define OOM(err) idb_err_set((err), IDB_EINTERNAL, NULL, "out of memory")

static int get_bool(json_t *o, const char *key, bool *out, idb_err *err)
{
	json_t *v = json_object_get(o, key);
	if (!v || json_is_null(v)) {
		*out = false;
		return 0;
	}
	if (!json_is_boolean(v))
		return idb_err_set(err, IDB_EINVAL, key, "must be true or false");
	*out = json_is_true(v);
	return 0;
}

static int get_role(json_t *o, const char *key, int def, int *out, idb_err *err)
{
	json_t *v = json_object_get(o, key);
	if (!v || json_is_null(v)) {
		*out = def;
		return 0;
	}
	int r = json_is_string(v) ? role_index(json_string_value(v)) : -1;
	if (r < 0)
		return idb_err_set(err, IDB_EINVAL, key, "must be one of " ROLE_LIST);
	*out = r;
	return 0;
}

/* A pattern: exact text, or "re:" + PCRE2. */
static int pat_init(idb_attrmap *m, pat *p, json_t *v, const char *field, idb_err *err)
{
	snprintf(p->field, sizeof(p->field), "%s", field);
	if (!json_is_string(v))
		return idb_err_set(err, IDB_EINVAL, field, "must be a string (exact value, or re:<regular expression>)");
	const char *s = json_string_value(v);
	size_t len = json_string_length(v);
	if (len == 0 || len > MAX_PATTERN_LEN + 3 || strlen(s) != len)
		return idb_err_set(err, IDB_EINVAL, field, "must be 1-%d characters", MAX_PATTERN_LEN);
	if (!(p->text = strdup(s)))
		return OOM(err);
	if (strncmp(s, "re:", 3) == 0) {
		p->is_re = true;
		if (!s[3])
			return idb_err_set(err, IDB_EINVAL, field, "re: must be followed by a regular expression");
		return rx_compile(m, &p->re, s + 3, field, err);
	}
	return 0;
}

static int parse_cands(idb_attrmap *m, json_t *o, const char *key, const char *def, candlist *out, idb_err *err)
{
	json_t *v = json_object_get(o, key);
	json_t *arr = NULL;
	const char *single = NULL;
	if (!v || json_is_null(v))
		single = def;
	else if (json_is_string(v))
		single = json_string_value(v);
	else if (json_is_array(v))
		arr = v;
	else
		return idb_err_set(err, IDB_EINVAL, key, "must be a string or an array of strings");
	size_t n = arr ? json_array_size(arr) : 1;
	if (n > MAX_CANDIDATES)
		return idb_err_set(err, IDB_EINVAL, key, "at most %d attribute names", MAX_CANDIDATES);
	if (n == 0)
		return 0;
	if (!(out->v = calloc(n, sizeof(cand))))
		return OOM(err);
	for (size_t i = 0; i < n; i++) {
		cand *c = &out->v[out->n++];
		if (arr)
			set_field(c->field, key, i, NULL);
		else
			snprintf(c->field, sizeof(c->field), "%s", key);
		json_t *e = arr ? json_array_get(arr, i) : NULL;
		if (arr && !json_is_string(e))
			return idb_err_set(err, IDB_EINVAL, c->field, "must be a string");
		const char *s = arr ? json_string_value(e) : single;
		size_t len = strlen(s);
		if (len == 0 || len > MAX_NAME_LEN || (arr && len != json_string_length(e)) ||
		    (!arr && v && len != json_string_length(v)))
			return idb_err_set(err, IDB_EINVAL, c->field, "must be 1-%d characters", MAX_NAME_LEN);
		if (!(c->name = strdup(s)))
			return OOM(err);
		if (strncmp(s, "re:", 3) == 0) {
			c->is_re = true;
			int rc = rx_compile(m, &c->re, s + 3, c->field, err);
			if (rc)
				return rc;
		}
	}
	return 0;
}

/* "$$", "$N" and "${N}" with N <= ncap; anything else after '$' is refused so
 * that a replacement means the same to PCRE2 and to our own expansion. */
static int check_refs(const char *s, uint32_t ncap, const char *field, idb_err *err)
{
	for (const char *p = s; *p; p++) {
		if (*p != '$')
			continue;
		p++;
		if (*p == '$')
			continue;
		bool brace = *p == '{';
		if (brace)
			p++;
		if (*p < '0' || *p > '9')
			return idb_err_set(err, IDB_EINVAL, field,
					   "a $ must be followed by a group number, {number} or another $");
		unsigned long n = 0;
		while (*p >= '0' && *p <= '9') {
			n = n * 10 + (unsigned long)(*p - '0');
			if (n > 1000)
				break;
			p++;
		}
		if (n > ncap)
			return idb_err_set(err, IDB_EINVAL, field, "refers to group $%lu but the pattern has %u capture groups",
					   n, ncap);
		if (brace && *p != '}')
			return idb_err_set(err, IDB_EINVAL, field, "${ must be closed by }");
		if (!brace)
			p--;
	}
	return 0;
}

/* Checks that an object has only the allowed keys. */
static int only_keys(json_t *o, const char *const *allowed, size_t n, const char *prefix, idb_err *err)
{
	const char *k;
	json_t *v;
	json_object_foreach(o, k, v)
	{
		bool ok = false;
		for (size_t i = 0; i < n && !ok; i++)
			ok = strcmp(k, allowed[i]) == 0;
		if (!ok) {
			char f[FIELD_LEN];
			snprintf(f, sizeof(f), "%s.%.40s", prefix, k);
			return idb_err_set(err, IDB_EINVAL, f, "unknown key");
		}
	}
	return 0;
}

static int parse_tf(idb_attrmap *m, json_t *e, tf *t, idb_err *err)
{
	char f[FIELD_LEN];
	if (json_is_string(e)) {
		const char *s = json_string_value(e);
		if (strcmp(s, "trim") == 0)
			t->k = TF_TRIM;
		else if (strcmp(s, "lowercase") == 0)
			t->k = TF_LOWER;
		else if (strcmp(s, "dn_to_cn") == 0)
			t->k = TF_DN_TO_CN;
		else
			return idb_err_set(err, IDB_EINVAL, t->field,
					   "unknown transform \"%.40s\" (expected trim, lowercase, dn_to_cn, or an object "
					   "regex_extract, regex_replace or split)",
					   s);
		return 0;
	}
	if (!json_is_object(e) || json_object_size(e) != 1)
		return idb_err_set(err, IDB_EINVAL, t->field,
				   "must be a transform name or an object with one key (regex_extract, regex_replace, split)");
	const char *name = json_object_iter_key(json_object_iter(e));
	json_t *a = json_object_iter_value(json_object_iter(e));
	size_t k;
	for (k = 0; k < sizeof(tf_names) / sizeof(tf_names[0]); k++)
		if (strcmp(name, tf_names[k]) == 0)
			break;
	if (k == sizeof(tf_names) / sizeof(tf_names[0]))
		return idb_err_set(err, IDB_EINVAL, t->field, "unknown transform \"%.40s\"", name);
	t->k = (enum tkind)k;
	field_join3(f, t->field, ".", tf_names[k]);
	if (t->k == TF_TRIM || t->k == TF_LOWER || t->k == TF_DN_TO_CN)
		return idb_err_set(err, IDB_EINVAL, f, "takes no arguments: write \"%s\" as a plain string", name);
	if (!json_is_object(a))
		return idb_err_set(err, IDB_EINVAL, f, "must be an object");
	if (t->k == TF_SPLIT) {
		static const char *const keys[] = {"delimiter"};
		int rc = only_keys(a, keys, 1, f, err);
		if (rc)
			return rc;
		json_t *d = json_object_get(a, "delimiter");
		field_join(f, t->field, ".split.delimiter");
		if (!json_is_string(d) || json_string_length(d) == 0 || json_string_length(d) > MAX_DELIM_LEN ||
		    strlen(json_string_value(d)) != json_string_length(d))
			return idb_err_set(err, IDB_EINVAL, f, "must be a string of 1-%d characters", MAX_DELIM_LEN);
		return (t->arg = strdup(json_string_value(d))) ? 0 : OOM(err);
	}
	static const char *const ekeys[] = {"pattern", "group"};
	static const char *const rkeys[] = {"pattern", "replacement"};
	int rc = only_keys(a, t->k == TF_EXTRACT ? ekeys : rkeys, 2, f, err);
	if (rc)
		return rc;
	char pf[FIELD_LEN];
	field_join(pf, f, ".pattern");
	json_t *p = json_object_get(a, "pattern");
	if (!json_is_string(p) || json_string_length(p) == 0 || strlen(json_string_value(p)) != json_string_length(p))
		return idb_err_set(err, IDB_EINVAL, pf, "must be a non-empty string");
	if ((rc = rx_compile(m, &t->re, json_string_value(p), pf, err)))
		return rc;
	if (t->k == TF_EXTRACT) {
		json_t *g = json_object_get(a, "group");
		field_join(pf, f, ".group");
		if (!g || json_is_null(g)) {
			t->group = t->re.ncap >= 1 ? 1 : 0;
		} else if (!json_is_integer(g) || json_integer_value(g) < 0 ||
			   json_integer_value(g) > (json_int_t)t->re.ncap) {
			return idb_err_set(err, IDB_EINVAL, pf, "must be an integer from 0 to %u (the pattern's capture groups)",
					   t->re.ncap);
		} else {
			t->group = (uint32_t)json_integer_value(g);
		}
		return 0;
	}
	json_t *r = json_object_get(a, "replacement");
	field_join(pf, f, ".replacement");
	if (!json_is_string(r) || json_string_length(r) > IDB_ATTR_MAX_VALUE_LEN ||
	    strlen(json_string_value(r)) != json_string_length(r))
		return idb_err_set(err, IDB_EINVAL, pf, "must be a string of at most %d characters", IDB_ATTR_MAX_VALUE_LEN);
	if ((rc = check_refs(json_string_value(r), t->re.ncap, pf, err)))
		return rc;
	return (t->arg = strdup(json_string_value(r))) ? 0 : OOM(err);
}

static int parse_tfs(idb_attrmap *m, json_t *o, const char *key, tflist *out, idb_err *err)
{
	json_t *v = json_object_get(o, key);
	if (!v || json_is_null(v))
		return 0;
	if (!json_is_array(v))
		return idb_err_set(err, IDB_EINVAL, key, "must be an array of transforms");
	size_t n = json_array_size(v);
	if (n > MAX_TRANSFORMS)
		return idb_err_set(err, IDB_EINVAL, key, "at most %d transforms", MAX_TRANSFORMS);
	if (n == 0)
		return 0;
	if (!(out->v = calloc(n, sizeof(tf))))
		return OOM(err);
	for (size_t i = 0; i < n; i++) {
		tf *t = &out->v[out->n++];
		set_field(t->field, key, i, NULL);
		int rc = parse_tf(m, json_array_get(v, i), t, err);
		if (rc)
			return rc;
	}
	return 0;
}

static int tmpl_push(idb_attrmap *m, const char *text, size_t len, bool is_ref, idb_err *err)
{
	tpart *np = realloc(m->tmpl, (m->ntmpl + 1) * sizeof(tpart));
	if (!np)
		return OOM(err);
	m->tmpl = np;
	if (!(np[m->ntmpl].text = strndup(text, len)))
		return OOM(err);
	np[m->ntmpl].is_ref = is_ref;
	m->ntmpl++;
	return 0;
}

static int parse_template(idb_attrmap *m, json_t *o, idb_err *err)
{
	static const char *const key = "name_template";
	json_t *v = json_object_get(o, key);
	if (!v || json_is_null(v))
		return 0;
	if (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) > MAX_NAME_LEN ||
	    strlen(json_string_value(v)) != json_string_length(v))
		return idb_err_set(err, IDB_EINVAL, key, "must be a string of 1-%d characters", MAX_NAME_LEN);
	const char *s = json_string_value(v);
	char lit[MAX_NAME_LEN + 1];
	size_t nl = 0;
	bool any_ref = false;
	for (const char *p = s; *p;) {
		if ((p[0] == '{' && p[1] == '{') || (p[0] == '}' && p[1] == '}')) {
			lit[nl++] = *p;
			p += 2;
		} else if (*p == '}') {
			return idb_err_set(err, IDB_EINVAL, key, "unmatched } at offset %zu (write }} for a literal brace)",
					   (size_t)(p - s));
		} else if (*p == '{') {
			const char *end = strchr(p + 1, '}');
			if (!end || end == p + 1 || memchr(p + 1, '{', (size_t)(end - p - 1)))
				return idb_err_set(err, IDB_EINVAL, key,
						   "{ at offset %zu must enclose an attribute name and be closed by }",
						   (size_t)(p - s));
			int rc = nl ? tmpl_push(m, lit, nl, false, err) : 0;
			if (!rc)
				rc = tmpl_push(m, p + 1, (size_t)(end - p - 1), true, err);
			if (rc)
				return rc;
			nl = 0;
			any_ref = true;
			p = end + 1;
		} else {
			lit[nl++] = *p++;
		}
	}
	if (!any_ref)
		return idb_err_set(err, IDB_EINVAL, key, "must refer to at least one attribute, e.g. \"{givenName} {surname}\"");
	return nl ? tmpl_push(m, lit, nl, false, err) : 0;
}

static int parse_pats(idb_attrmap *m, json_t *o, const char *key, pat **out, size_t *nout, idb_err *err)
{
	json_t *v = json_object_get(o, key);
	if (!v || json_is_null(v))
		return 0;
	if (!json_is_array(v))
		return idb_err_set(err, IDB_EINVAL, key, "must be an array of patterns (exact value, or re:<regex>)");
	size_t n = json_array_size(v);
	if (n > MAX_PATTERNS)
		return idb_err_set(err, IDB_EINVAL, key, "at most %d patterns", MAX_PATTERNS);
	if (n == 0)
		return 0;
	if (!(*out = calloc(n, sizeof(pat))))
		return OOM(err);
	for (size_t i = 0; i < n; i++) {
		char f[FIELD_LEN];
		set_field(f, key, i, NULL);
		(*nout)++;
		int rc = pat_init(m, &(*out)[i], json_array_get(v, i), f, err);
		if (rc)
			return rc;
	}
	return 0;
}

static int cmp_keyidx(const void *a, const void *b)
{
	const keyidx *x = a, *y = b;
	int c = strcmp(x->key, y->key);
	return c ? c : (x->idx > y->idx) - (x->idx < y->idx);
}

/* Splits rules into a sorted exact index and an ordered regex list. */
static int index_rules(const pat *(*get)(const idb_attrmap *, size_t), const idb_attrmap *m, size_t n, keyidx **ex,
		       size_t *nex, uint32_t **re, size_t *nre, idb_err *err)
{
	if (n == 0)
		return 0;
	*ex = calloc(n, sizeof(keyidx));
	*re = calloc(n, sizeof(uint32_t));
	if (!*ex || !*re)
		return OOM(err);
	for (size_t i = 0; i < n; i++) {
		const pat *p = get(m, i);
		if (p->is_re)
			(*re)[(*nre)++] = (uint32_t)i;
		else
			(*ex)[(*nex)++] = (keyidx){p->text, (uint32_t)i};
	}
	qsort(*ex, *nex, sizeof(keyidx), cmp_keyidx);
	return 0;
}

/* A pattern may join a combined alternation "(?:p1)|(?:p2)|..." only when
 * that cannot change whether it matches: nothing that counts groups (back
 * references, subroutine calls, conditions), no verbs that cut backtracking
 * across alternatives, no \Q quoting or # comments that could swallow the
 * glue. Conservative on purpose: anything doubtful just gets no prefilter. */
static bool combinable(const char *p)
{
	static const char *const bad[] = {"#", "\\Q", "(*", "(?(", "\\g", "\\k", "(?P", "(?&", "(?R", "(?|", "(?+", "(?-"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (strstr(p, bad[i]))
			return false;
	for (const char *q = p; *q; q++) {
		if (q[0] == '\\' && q[1] >= '0' && q[1] <= '9')
			return false;
		if (q[0] == '(' && q[1] == '?' && q[2] >= '0' && q[2] <= '9')
			return false;
		if (q[0] == '\\' && q[1])
			q++;
	}
	return true;
}

/* A prefilter for n >= 2 regex rules: when the alternation does not match a
 * value, none of the rules can, and n calls become one. */
static void build_prefilter(rx *out, const pat *(*get)(const idb_attrmap *, size_t), const idb_attrmap *m,
			    const uint32_t *idx, size_t n)
{
	if (n < 2)
		return;
	size_t len = 1;
	for (size_t i = 0; i < n; i++) {
		const char *p = get(m, idx[i])->text + 3;
		if (!combinable(p))
			return;
		len += strlen(p) + 6;
	}
	char *buf = malloc(len);
	if (!buf)
		return; /* no prefilter: slower, same result */
	size_t o = 0;
	for (size_t i = 0; i < n; i++) {
		const char *p = get(m, idx[i])->text + 3;
		size_t pl = strlen(p);
		memcpy(buf + o, i ? "|(?:" : "(?:", i ? 4 : 3);
		o += i ? 4 : 3;
		memcpy(buf + o, p, pl);
		o += pl;
		buf[o++] = ')';
	}
	buf[o] = '\0';
	int ec;
	PCRE2_SIZE off;
	out->code = pcre2_compile((PCRE2_SPTR)buf, o, PCRE2_UTF | PCRE2_NEVER_BACKSLASH_C | PCRE2_NO_AUTO_CAPTURE, &ec,
				  &off, NULL);
	free(buf);
	if (out->code)
		out->jit = pcre2_jit_compile(out->code, PCRE2_JIT_COMPLETE) == 0;
}

static int build_hidx(hidx *t, const keyidx *a, size_t n, idb_err *err)
{
	if (n == 0)
		return 0;
	size_t cap = 16;
	while (cap < 2 * n)
		cap *= 2;
	t->hash = calloc(cap, sizeof(uint64_t));
	t->pos1 = calloc(cap, sizeof(uint32_t));
	if (!t->hash || !t->pos1)
		return OOM(err);
	t->cap = cap;
	for (size_t i = 0; i < n; i++) {
		if (i && strcmp(a[i - 1].key, a[i].key) == 0)
			continue; /* only the first of a run */
		uint64_t h = hash_str(a[i].key);
		size_t s = (size_t)h & (cap - 1);
		while (t->pos1[s])
			s = (s + 1) & (cap - 1);
		t->hash[s] = h;
		t->pos1[s] = (uint32_t)i + 1;
	}
	return 0;
}

/* Position of the first keyidx entry for k, or n when absent. */
static size_t hidx_find(const hidx *t, const keyidx *a, size_t n, const char *k, uint64_t h)
{
	if (!t->cap)
		return n;
	size_t s = (size_t)h & (t->cap - 1);
	while (t->pos1[s]) {
		if (t->hash[s] == h && strcmp(a[t->pos1[s] - 1].key, k) == 0)
			return t->pos1[s] - 1;
		s = (s + 1) & (t->cap - 1);
	}
	return n;
}

static const pat *map_pat(const idb_attrmap *m, size_t i)
{
	return &m->maps[i].p;
}

static const pat *role_pat(const idb_attrmap *m, size_t i)
{
	return &m->roles[i].p;
}

static int parse_mapping(idb_attrmap *m, json_t *o, idb_err *err)
{
	static const char *const key = "group_mapping";
	json_t *v = json_object_get(o, key);
	if (!v || json_is_null(v))
		return 0;
	if (!json_is_array(v))
		return idb_err_set(err, IDB_EINVAL, key, "must be an array of {\"idp\": pattern, \"group\": name}");
	size_t n = json_array_size(v);
	if (n > MAX_RULES)
		return idb_err_set(err, IDB_EINVAL, key, "at most %d rules", MAX_RULES);
	if (n == 0)
		return 0;
	if (!(m->maps = calloc(n, sizeof(maprule))))
		return OOM(err);
	for (size_t i = 0; i < n; i++) {
		char f[FIELD_LEN], base[FIELD_LEN];
		set_field(base, key, i, NULL);
		maprule *r = &m->maps[m->nmaps++];
		json_t *e = json_array_get(v, i);
		if (!json_is_object(e))
			return idb_err_set(err, IDB_EINVAL, base, "must be an object {\"idp\": pattern, \"group\": name}");
		static const char *const keys[] = {"idp", "group"};
		int rc = only_keys(e, keys, 2, base, err);
		if (rc)
			return rc;
		set_field(f, key, i, ".idp");
		if ((rc = pat_init(m, &r->p, json_object_get(e, "idp"), f, err)))
			return rc;
		set_field(f, key, i, ".group");
		json_t *g = json_object_get(e, "group");
		if (!json_is_string(g) || json_string_length(g) == 0 || json_string_length(g) > MAX_GROUP_NAME_LEN ||
		    strlen(json_string_value(g)) != json_string_length(g))
			return idb_err_set(err, IDB_EINVAL, f, "must be a group name of 1-%d characters", MAX_GROUP_NAME_LEN);
		const char *gs = json_string_value(g);
		if (is_space(gs[0]) || is_space(gs[strlen(gs) - 1]))
			return idb_err_set(err, IDB_EINVAL, f, "must not begin or end with white space");
		if (r->p.is_re && strchr(gs, '$')) {
			if ((rc = check_refs(gs, r->p.re.ncap, f, err)))
				return rc;
			r->expand = true;
		}
		if (!(r->group = strdup(gs)))
			return OOM(err);
	}
	int rc = index_rules(map_pat, m, m->nmaps, &m->map_exact, &m->nmap_exact, &m->map_re, &m->nmap_re, err);
	if (rc == 0)
		rc = build_hidx(&m->map_h, m->map_exact, m->nmap_exact, err);
	if (rc == 0)
		build_prefilter(&m->map_pf, map_pat, m, m->map_re, m->nmap_re);
	return rc;
}

static int parse_roles(idb_attrmap *m, json_t *o, idb_err *err)
{
	static const char *const key = "role_rules";
	json_t *v = json_object_get(o, key);
	if (!v || json_is_null(v))
		return 0;
	if (!json_is_array(v))
		return idb_err_set(err, IDB_EINVAL, key, "must be an array of {\"group\": pattern, \"role\": role}");
	size_t n = json_array_size(v);
	if (n > MAX_RULES)
		return idb_err_set(err, IDB_EINVAL, key, "at most %d rules", MAX_RULES);
	if (n == 0)
		return 0;
	if (!(m->roles = calloc(n, sizeof(rolerule))))
		return OOM(err);
	for (size_t i = 0; i < n; i++) {
		char f[FIELD_LEN], base[FIELD_LEN];
		set_field(base, key, i, NULL);
		rolerule *r = &m->roles[m->nroles++];
		json_t *e = json_array_get(v, i);
		if (!json_is_object(e))
			return idb_err_set(err, IDB_EINVAL, base, "must be an object {\"group\": pattern, \"role\": role}");
		static const char *const keys[] = {"group", "role"};
		int rc = only_keys(e, keys, 2, base, err);
		if (rc)
			return rc;
		set_field(f, key, i, ".group");
		if ((rc = pat_init(m, &r->p, json_object_get(e, "group"), f, err)))
			return rc;
		set_field(f, key, i, ".role");
		json_t *rv = json_object_get(e, "role");
		r->role = json_is_string(rv) ? role_index(json_string_value(rv)) : -1;
		if (r->role < 0)
			return idb_err_set(err, IDB_EINVAL, f, "must be one of " ROLE_LIST);
	}
	int rc = index_rules(role_pat, m, m->nroles, &m->role_exact, &m->nrole_exact, &m->role_re, &m->nrole_re, err);
	if (rc == 0)
		rc = build_hidx(&m->role_h, m->role_exact, m->nrole_exact, err);
	if (rc == 0)
		build_prefilter(&m->role_pf, role_pat, m, m->role_re, m->nrole_re);
	return rc;
}

static int parse_overage(idb_attrmap *m, json_t *o, idb_err *err)
{
	static const char *const key = "groups_overage_attributes";
	json_t *v = json_object_get(o, key);
	size_t n;
	if (!v || json_is_null(v)) {
		n = sizeof(default_overage) / sizeof(default_overage[0]);
	} else if (!json_is_array(v)) {
		return idb_err_set(err, IDB_EINVAL, key, "must be an array of attribute names");
	} else {
		n = json_array_size(v);
		if (n > MAX_CANDIDATES)
			return idb_err_set(err, IDB_EINVAL, key, "at most %d attribute names", MAX_CANDIDATES);
	}
	if (n == 0)
		return 0;
	if (!(m->overage = calloc(n, sizeof(char *))))
		return OOM(err);
	for (size_t i = 0; i < n; i++) {
		const char *s = default_overage[i < 3 ? i : 0];
		if (v && !json_is_null(v)) {
			json_t *e = json_array_get(v, i);
			char f[FIELD_LEN];
			set_field(f, key, i, NULL);
			if (!json_is_string(e) || json_string_length(e) == 0 || json_string_length(e) > MAX_NAME_LEN ||
			    strlen(json_string_value(e)) != json_string_length(e))
				return idb_err_set(err, IDB_EINVAL, f, "must be an attribute name of 1-%d characters",
						   MAX_NAME_LEN);
			s = json_string_value(e);
		}
		if (!(m->overage[m->noverage] = strdup(s)))
			return OOM(err);
		m->noverage++;
	}
	return 0;
}

int idb_attrmap_compile(idb_attrmap **out, const char *settings_json, idb_err *err)
{
	*out = NULL;
	json_error_t jerr;
	json_t *o = json_loads(settings_json && *settings_json ? settings_json : "{}", JSON_REJECT_DUPLICATES, &jerr);
	if (!o || !json_is_object(o)) {
		json_decref(o);
		if (!o)
			return idb_err_set(err, IDB_EINVAL, "jit", "settings are not valid JSON (line %d: %.120s)", jerr.line,
					   jerr.text);
		return idb_err_set(err, IDB_EINVAL, "jit", "settings must be a JSON object");
	}
	idb_attrmap *m = calloc(1, sizeof(*m));
	int rc = m ? 0 : OOM(err);
	if (rc == 0 && !(m->mctx = pcre2_match_context_create(NULL)))
		rc = OOM(err);
	if (rc == 0) {
		pcre2_set_match_limit(m->mctx, IDB_ATTRMAP_MATCH_LIMIT);
		pcre2_set_depth_limit(m->mctx, IDB_ATTRMAP_DEPTH_LIMIT);
		pcre2_set_heap_limit(m->mctx, IDB_ATTRMAP_HEAP_LIMIT_KIB);
		rc = parse_cands(m, o, "email_attribute", "email", &m->email_c, err);
	}
	if (rc == 0)
		rc = parse_cands(m, o, "name_attribute", "displayName", &m->name_c, err);
	if (rc == 0)
		rc = parse_cands(m, o, "group_attribute", "memberOf", &m->group_c, err);
	if (rc == 0)
		rc = get_bool(o, "email_from_subject", &m->email_from_subject, err);
	if (rc == 0)
		rc = parse_template(m, o, err);
	if (rc == 0)
		rc = parse_tfs(m, o, "email_transforms", &m->email_t, err);
	if (rc == 0)
		rc = parse_tfs(m, o, "name_transforms", &m->name_t, err);
	if (rc == 0)
		rc = parse_tfs(m, o, "group_transforms", &m->group_t, err);
	if (rc == 0)
		rc = parse_pats(m, o, "group_include", &m->incl, &m->nincl, err);
	if (rc == 0)
		rc = parse_pats(m, o, "group_exclude", &m->excl, &m->nexcl, err);
	if (rc == 0)
		rc = parse_mapping(m, o, err);
	if (rc == 0)
		rc = get_bool(o, "group_mapping_only", &m->mapping_only, err);
	if (rc == 0)
		rc = parse_roles(m, o, err);
	if (rc == 0)
		rc = get_role(o, "default_role", 0, &m->default_role, err);
	if (rc == 0)
		rc = get_role(o, "max_role", NROLES - 1, &m->max_role, err);
	if (rc == 0 && m->default_role > m->max_role)
		rc = idb_err_set(err, IDB_EINVAL, "default_role", "must not be above max_role");
	if (rc == 0)
		rc = parse_overage(m, o, err);
	json_decref(o);
	if (rc != 0) {
		idb_attrmap_free(m);
		return rc;
	}
	*out = m;
	return 0;
}

/* ------------------------------------------------------------ identity */

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

/* ------------------------------------------------------- runtime state */

typedef struct strvec {
	char **v;
	size_t n, cap;
} strvec;

static void sv_free(strvec *s)
{
	for (size_t i = 0; i < s->n; i++)
		free(s->v[i]);
	free(s->v);
	memset(s, 0, sizeof(*s));
}

/* Takes ownership of p (freed on failure); -1 when out of memory. */
static int sv_push(strvec *s, char *p)
{
	if (!p)
		return -1;
	if (s->n == s->cap) {
		size_t nc = s->cap ? s->cap * 2 : 8;
		char **nv = realloc(s->v, nc * sizeof(char *));
		if (!nv) {
			free(p);
			return -1;
		}
		s->v = nv;
		s->cap = nc;
	}
	s->v[s->n++] = p;
	return 0;
}

/* Open-addressing set of borrowed strings, for deduplication. */
typedef struct strset {
	const char **slot;
	uint64_t *hash;
	size_t cap, n;
} strset;

static uint64_t hash_str(const char *s)
{
	uint64_t h = 1469598103934665603ull;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ull;
	return h;
}

static void set_free(strset *s)
{
	free(s->slot);
	free(s->hash);
}

static int set_grow(strset *s)
{
	size_t nc = s->cap ? s->cap * 2 : 64;
	const char **ns = calloc(nc, sizeof(char *));
	uint64_t *nh = malloc(nc * sizeof(uint64_t));
	if (!ns || !nh) {
		free(ns);
		free(nh);
		return -1;
	}
	for (size_t i = 0; i < s->cap; i++) {
		if (!s->slot[i])
			continue;
		size_t h = (size_t)s->hash[i] & (nc - 1);
		while (ns[h])
			h = (h + 1) & (nc - 1);
		ns[h] = s->slot[i];
		nh[h] = s->hash[i];
	}
	set_free(s);
	s->slot = ns;
	s->hash = nh;
	s->cap = nc;
	return 0;
}

static bool set_has(const strset *s, const char *k, uint64_t hk)
{
	if (!s->cap)
		return false;
	size_t h = (size_t)hk & (s->cap - 1);
	while (s->slot[h]) {
		if (s->hash[h] == hk && strcmp(s->slot[h], k) == 0)
			return true;
		h = (h + 1) & (s->cap - 1);
	}
	return false;
}

/* Inserts k (absent, checked by the caller); -1 when out of memory. */
static int set_insert(strset *s, const char *k, uint64_t hk)
{
	if ((s->n + 1) * 2 > s->cap && set_grow(s) != 0)
		return -1;
	size_t h = (size_t)hk & (s->cap - 1);
	while (s->slot[h])
		h = (h + 1) & (s->cap - 1);
	s->slot[h] = k;
	s->hash[h] = hk;
	s->n++;
	return 0;
}

typedef struct run {
	const idb_attrmap *m;
	const idb_identity *id;
	pcre2_match_data *md;
	idb_err *err;
	json_t *trace; /* explain only */
	bool *used;    /* explain only: attribute i fed something */
} run;

static int r_oom(run *r)
{
	return OOM(r->err);
}

static void mark_used(run *r, size_t i)
{
	if (r->used)
		r->used[i] = true;
}

/* Trace helpers: no-ops without a trace; jansson drops NULL values safely. */
static json_t *jstr(const char *s)
{
	return s ? json_stringn(s, strlen(s)) : json_null();
}

static json_t *jvec(const strvec *v)
{
	json_t *a = json_array();
	for (size_t i = 0; a && i < v->n; i++)
		json_array_append_new(a, jstr(v->v[i]));
	return a;
}

static json_t *jcands(const candlist *c)
{
	json_t *a = json_array();
	for (size_t i = 0; a && i < c->n; i++)
		json_array_append_new(a, jstr(c->v[i].name));
	return a;
}

static int rx_error(run *r, int rc, size_t len, const char *field)
{
	if (rc == PCRE2_ERROR_MATCHLIMIT || rc == PCRE2_ERROR_DEPTHLIMIT || rc == PCRE2_ERROR_HEAPLIMIT ||
	    rc == PCRE2_ERROR_JIT_STACKLIMIT)
		return idb_err_set(r->err, IDB_EINVAL, field,
				   "the regular expression hit its match limit on a value of %zu bytes; the identity is "
				   "refused rather than mapped without it (simplify the pattern)",
				   len);
	PCRE2_UCHAR buf[120];
	if (pcre2_get_error_message(rc, buf, sizeof(buf)) < 0)
		idb_strlcpy((char *)buf, "unknown error", sizeof(buf));
	return idb_err_set(r->err, IDB_EINVAL, field, "regular expression failed: %s", (const char *)buf);
}

/* 1 match, 0 no match, negative: error recorded (never "no match" on a limit). */
static int rx_exec(run *r, const rx *x, const char *s, size_t len, const char *field)
{
	/* Values were checked as UTF-8 when they entered the pipeline. */
	int rc = x->jit ? pcre2_jit_match(x->code, (PCRE2_SPTR)s, len, 0, 0, r->md, r->m->mctx)
			: pcre2_match(x->code, (PCRE2_SPTR)s, len, 0, PCRE2_NO_UTF_CHECK, r->md, r->m->mctx);
	if (rc >= 0)
		return 1;
	if (rc == PCRE2_ERROR_NOMATCH)
		return 0;
	return rx_error(r, rc, len, field);
}

/* Prefilter: false only when no rule behind pf can match s. Any error (a
 * limit) answers "maybe", so the rules themselves decide and report. */
static bool pf_maybe(run *r, const rx *pf, const char *s, size_t len)
{
	if (!pf->code)
		return true;
	int rc = pf->jit ? pcre2_jit_match(pf->code, (PCRE2_SPTR)s, len, 0, 0, r->md, r->m->mctx)
			 : pcre2_match(pf->code, (PCRE2_SPTR)s, len, 0, PCRE2_NO_UTF_CHECK, r->md, r->m->mctx);
	return rc != PCRE2_ERROR_NOMATCH;
}

static int pat_match(run *r, const pat *p, const char *s)
{
	if (!p->is_re)
		return strcmp(p->text, s) == 0;
	return rx_exec(r, &p->re, s, strlen(s), p->field);
}

static int check_identity(run *r)
{
	const idb_identity *id = r->id;
	if (id->nattrs > IDB_ATTR_MAX_ATTRS)
		return idb_err_set(r->err, IDB_ETOOBIG, "attributes", "the identity has %zu attributes (at most %d)",
				   id->nattrs, IDB_ATTR_MAX_ATTRS);
	if (id->nattrs && !id->attrs)
		return idb_err_set(r->err, IDB_EINVAL, "attributes", "attribute list missing");
	for (size_t i = 0; i < id->nattrs; i++) {
		const idb_attr *a = &id->attrs[i];
		if (!a->name || (a->nvalues && !a->values))
			return idb_err_set(r->err, IDB_EINVAL, "attributes", "attribute %zu has no name or values", i);
		if (a->nvalues > IDB_ATTR_MAX_VALUES)
			return idb_err_set(r->err, IDB_ETOOBIG, "attributes", "attribute %.64s has %zu values (at most %d)",
					   a->name, a->nvalues, IDB_ATTR_MAX_VALUES);
		for (size_t k = 0; k < a->nvalues; k++) {
			if (!a->values[k])
				return idb_err_set(r->err, IDB_EINVAL, "attributes", "attribute %.64s has a missing value",
						   a->name);
			if (strnlen(a->values[k], IDB_ATTR_MAX_VALUE_LEN + 1) > IDB_ATTR_MAX_VALUE_LEN)
				return idb_err_set(r->err, IDB_ETOOBIG, "attributes",
						   "a value of attribute %.64s is longer than %d bytes", a->name,
						   IDB_ATTR_MAX_VALUE_LEN);
		}
	}
	return 0;
}

/* The index of the attribute named by the first present candidate in *idx
 * (-1 when none is present) and that candidate's index in *which. */
static int find_attr(run *r, const candlist *c, long *idx, size_t *which)
{
	const idb_identity *id = r->id;
	*idx = -1;
	for (size_t ci = 0; ci < c->n; ci++) {
		const cand *cd = &c->v[ci];
		for (size_t i = 0; i < id->nattrs; i++) {
			const idb_attr *a = &id->attrs[i];
			if (!a->nvalues)
				continue;
			int hit;
			if (!cd->is_re) {
				hit = strcmp(a->name, cd->name) == 0;
			} else {
				size_t len = strlen(a->name);
				hit = utf8_valid((const unsigned char *)a->name, len) ? rx_exec(r, &cd->re, a->name, len, cd->field)
										    : 0;
				if (hit < 0)
					return hit;
			}
			if (hit) {
				*idx = (long)i;
				*which = ci;
				return 0;
			}
		}
	}
	return 0;
}

/* ---------------------------------------------------------- transforms */

/* "CN=Support Team,OU=Groups,DC=acme,DC=com" -> "Support Team" (RFC 4514
 * escapes: "\," and "\2C"; a quoted value as in RFC 1779). A value whose
 * first RDN is not CN is returned unchanged. NULL when out of memory. */
static char *dn_to_cn(const char *s, bool *bad, bool *hexed)
{
	const char *p = s;
	*bad = false;
	*hexed = false;
	while (*p == ' ')
		p++;
	if (strncasecmp(p, "cn", 2) != 0)
		return strdup(s);
	p += 2;
	while (*p == ' ')
		p++;
	if (*p != '=')
		return strdup(s);
	p++;
	while (*p == ' ')
		p++;
	char *o = malloc(strlen(p) + 1);
	if (!o)
		return NULL;
	size_t n = 0, keep = 0;
	if (*p == '"') {
		for (p++; *p && *p != '"'; p++) {
			if (*p == '\\' && p[1])
				p++;
			o[n++] = *p;
		}
		keep = n;
	} else {
		while (*p && *p != ',' && *p != '+' && *p != ';') {
			if (*p == '\\') {
				static const char hex[] = "0123456789abcdef";
				const char *h1 = p[1] ? strchr(hex, p[1] | 0x20) : NULL;
				const char *h2 = h1 && p[2] ? strchr(hex, p[2] | 0x20) : NULL;
				if (h1 && h2) {
					unsigned char b = (unsigned char)(((h1 - hex) << 4) | (h2 - hex));
					if (!b)
						*bad = true;
					*hexed = true;
					o[n++] = (char)b;
					p += 3;
				} else if (p[1]) {
					o[n++] = p[1];
					p += 2;
				} else {
					p++;
				}
				keep = n;
			} else {
				o[n++] = *p;
				if (*p != ' ')
					keep = n;
				p++;
			}
		}
	}
	o[keep] = '\0';
	return o;
}

/* Appends the $N-expanded template to buf (size IDB_ATTR_MAX_VALUE_LEN+1). */
static bool expand_refs(char *buf, const char *tpl, const char *subj, const PCRE2_SIZE *ov, uint32_t npairs)
{
	size_t n = 0;
	for (const char *p = tpl; *p; p++) {
		const char *piece = p;
		size_t plen = 1;
		if (*p == '$') {
			p++;
			if (*p == '$') {
				piece = p;
			} else {
				bool brace = *p == '{';
				if (brace)
					p++;
				unsigned long g = 0;
				while (*p >= '0' && *p <= '9' && g <= 1000)
					g = g * 10 + (unsigned long)(*p++ - '0');
				if (!brace)
					p--;
				plen = 0;
				if (g < npairs && ov[2 * g] != PCRE2_UNSET && ov[2 * g + 1] >= ov[2 * g]) {
					piece = subj + ov[2 * g];
					plen = ov[2 * g + 1] - ov[2 * g];
				}
			}
		}
		if (n + plen > IDB_ATTR_MAX_VALUE_LEN)
			return false;
		memcpy(buf + n, piece, plen);
		n += plen;
	}
	buf[n] = '\0';
	return true;
}

static int apply_tf(run *r, const tf *t, const char *v, strvec *out)
{
	size_t len = strlen(v);
	char *res = NULL;
	switch (t->k) {
	case TF_TRIM:
		res = trimmed_dup(v);
		break;
	case TF_LOWER:
		if ((res = strdup(v)))
			idb_str_lower(res);
		break;
	case TF_DN_TO_CN: {
		bool bad, hexed;
		if (!(res = dn_to_cn(v, &bad, &hexed)))
			return r_oom(r);
		if (bad || (hexed && !utf8_valid((const unsigned char *)res, strlen(res)))) {
			free(res);
			return idb_err_set(r->err, IDB_EINVAL, t->field,
					   "a DN's escaped bytes do not form valid UTF-8 text (value of %zu bytes)", len);
		}
		break;
	}
	case TF_EXTRACT: {
		int rc = rx_exec(r, &t->re, v, len, t->field);
		if (rc <= 0)
			return rc; /* no match: the value is dropped */
		const PCRE2_SIZE *ov = pcre2_get_ovector_pointer(r->md);
		if (t->group >= pcre2_get_ovector_count(r->md) || ov[2 * t->group] == PCRE2_UNSET ||
		    ov[2 * t->group + 1] < ov[2 * t->group])
			return 0;
		res = strndup(v + ov[2 * t->group], ov[2 * t->group + 1] - ov[2 * t->group]);
		break;
	}
	case TF_REPLACE: {
		char buf[IDB_ATTR_MAX_VALUE_LEN + 1];
		PCRE2_SIZE olen = sizeof(buf);
		int rc = pcre2_substitute(t->re.code, (PCRE2_SPTR)v, len, 0,
					  PCRE2_SUBSTITUTE_GLOBAL | PCRE2_SUBSTITUTE_UNSET_EMPTY | PCRE2_NO_UTF_CHECK, r->md,
					  r->m->mctx, (PCRE2_SPTR)t->arg, PCRE2_ZERO_TERMINATED, (PCRE2_UCHAR *)buf, &olen);
		if (rc == PCRE2_ERROR_NOMEMORY)
			return idb_err_set(r->err, IDB_ETOOBIG, t->field, "the replacement makes a value longer than %d bytes",
					   IDB_ATTR_MAX_VALUE_LEN);
		if (rc < 0 && rc != PCRE2_ERROR_NOMATCH)
			return rx_error(r, rc, len, t->field);
		res = strndup(buf, olen);
		break;
	}
	case TF_SPLIT: {
		size_t dl = strlen(t->arg);
		const char *p = v;
		for (;;) {
			const char *q = strstr(p, t->arg);
			size_t pl = q ? (size_t)(q - p) : strlen(p);
			if (out->n >= IDB_ATTR_MAX_VALUES)
				return idb_err_set(r->err, IDB_ETOOBIG, t->field, "split makes more than %d values",
						   IDB_ATTR_MAX_VALUES);
			if (sv_push(out, strndup(p, pl)) != 0)
				return r_oom(r);
			if (!q)
				break;
			p = q + dl;
		}
		return 0;
	}
	}
	if (!res)
		return r_oom(r);
	if (out->n >= IDB_ATTR_MAX_VALUES) {
		free(res);
		return idb_err_set(r->err, IDB_ETOOBIG, t->field, "more than %d values", IDB_ATTR_MAX_VALUES);
	}
	return sv_push(out, res) == 0 ? 0 : r_oom(r);
}

/* Runs the transforms over in[0..nin) (borrowed); the results, owned, go to
 * *vals (left untouched when there are no transforms). */
static int run_tfs_in(run *r, const tflist *tl, const char *const *in, size_t nin, strvec *vals, json_t *tr)
{
	json_t *steps = tr ? json_array() : NULL;
	if (tr)
		json_object_set_new(tr, "steps", steps);
	for (size_t i = 0; i < tl->n; i++) {
		strvec out = {0};
		for (size_t k = 0; k < nin; k++) {
			int rc = apply_tf(r, &tl->v[i], in[k], &out);
			if (rc) {
				sv_free(&out);
				return rc;
			}
		}
		sv_free(vals);
		*vals = out;
		in = (const char *const *)vals->v;
		nin = vals->n;
		if (steps)
			json_array_append_new(steps, json_pack("{s:s, s:s, s:o*}", "step", tl->v[i].field, "transform",
							       tf_names[tl->v[i].k], "values", jvec(vals)));
	}
	return 0;
}

static int run_tfs(run *r, const tflist *tl, strvec *vals, json_t *tr)
{
	strvec out = *vals;
	vals->v = NULL;
	vals->n = vals->cap = 0;
	strvec in = out;
	int rc = run_tfs_in(r, tl, (const char *const *)in.v, in.n, vals, tr);
	if (tl->n == 0)
		*vals = in; /* nothing ran: keep the input */
	else
		sv_free(&in);
	return rc;
}

static json_t *jarr(const char *const *v, size_t n)
{
	json_t *a = json_array();
	for (size_t i = 0; a && i < n; i++)
		json_array_append_new(a, jstr(v[i]));
	return a;
}

static int bad_utf8(run *r, const char *field, const char *attr)
{
	return idb_err_set(r->err, IDB_EINVAL, field, "a value of %.64s is not valid UTF-8", attr);
}

/* ---------------------------------------------------------------- steps */

static int map_email(run *r, idb_profile *out)
{
	const idb_attrmap *m = r->m;
	const idb_identity *id = r->id;
	json_t *tr = r->trace ? json_object() : NULL;
	if (tr) {
		json_object_set_new(r->trace, "email", tr);
		json_object_set_new(tr, "candidates", jcands(&m->email_c));
	}
	long ai;
	size_t ci = 0;
	int rc = find_attr(r, &m->email_c, &ai, &ci);
	if (rc)
		return rc;
	strvec vals = {0};
	const char *src;
	if (ai >= 0) {
		const idb_attr *a = &id->attrs[ai];
		mark_used(r, (size_t)ai);
		src = a->name;
		if (a->nvalues != 1)
			return idb_err_set(r->err, IDB_EINVAL, "email", "attribute %.128s must have exactly one value (got %zu)",
					   a->name, a->nvalues);
		if (sv_push(&vals, strdup(a->values[0])) != 0)
			return r_oom(r);
	} else if (m->email_from_subject && id->subject && id->subject_format &&
		   strstr(id->subject_format, "emailAddress")) {
		src = "subject";
		if (strnlen(id->subject, IDB_ATTR_MAX_VALUE_LEN + 1) > IDB_ATTR_MAX_VALUE_LEN)
			return idb_err_set(r->err, IDB_ETOOBIG, "email", "the subject is longer than %d bytes",
					   IDB_ATTR_MAX_VALUE_LEN);
		if (sv_push(&vals, strdup(id->subject)) != 0)
			return r_oom(r);
	} else {
		if (m->email_c.n == 1)
			return idb_err_set(r->err, IDB_EINVAL, "email", "the identity provider sent no %.128s attribute",
					   m->email_c.v[0].name);
		char list[200] = "";
		size_t n = 0;
		for (size_t i = 0; i < m->email_c.n && n < sizeof(list); i++) {
			int w = snprintf(list + n, sizeof(list) - n, "%s%s", i ? ", " : "", m->email_c.v[i].name);
			n += w > 0 ? (size_t)w : 0;
		}
		return idb_err_set(r->err, IDB_EINVAL, "email", "the identity provider sent none of the attributes %s%s",
				   list, m->email_from_subject ? " and the subject is not an e-mail NameID" : "");
	}
	if (!utf8_valid((const unsigned char *)vals.v[0], strlen(vals.v[0]))) {
		sv_free(&vals);
		return bad_utf8(r, "email", src);
	}
	if (tr) {
		json_object_set_new(tr, "source", jstr(src));
		json_object_set_new(tr, "input", jstr(vals.v[0]));
	}
	rc = run_tfs(r, &m->email_t, &vals, tr);
	if (rc == 0 && vals.n != 1)
		rc = idb_err_set(r->err, IDB_EINVAL, "email", "the email transforms left %zu values of %.128s (need exactly one)",
				 vals.n, src);
	if (rc == 0) {
		out->email = trimmed_dup(vals.v[0]);
		if (!out->email)
			rc = r_oom(r);
	}
	sv_free(&vals);
	if (rc)
		return rc;
	idb_str_lower(out->email);
	if (tr)
		json_object_set_new(tr, "value", jstr(out->email));
	if (!idb_email_valid(out->email))
		return idb_err_set(r->err, IDB_EINVAL, "email", "%.128s is not a valid e-mail address", src);
	return 0;
}

static int render_template(run *r, strvec *vals)
{
	char buf[IDB_ATTR_MAX_VALUE_LEN + 1];
	size_t n = 0;
	bool any = false;
	for (size_t i = 0; i < r->m->ntmpl; i++) {
		const tpart *tp = &r->m->tmpl[i];
		const char *piece = tp->text;
		if (tp->is_ref) {
			piece = "";
			for (size_t k = 0; k < r->id->nattrs; k++) {
				if (strcmp(r->id->attrs[k].name, tp->text) == 0) {
					mark_used(r, k);
					if (r->id->attrs[k].nvalues)
						piece = r->id->attrs[k].values[0];
					break;
				}
			}
			if (*piece)
				any = true;
		}
		size_t pl = strlen(piece);
		if (n + pl > IDB_ATTR_MAX_VALUE_LEN)
			return idb_err_set(r->err, IDB_ETOOBIG, "name_template", "the rendered name is longer than %d bytes",
					   IDB_ATTR_MAX_VALUE_LEN);
		memcpy(buf + n, piece, pl);
		n += pl;
	}
	buf[n] = '\0';
	if (!any)
		return 0;
	/* Collapse white space left by missing parts. */
	size_t o = 0;
	for (size_t i = 0; i < n; i++) {
		if (is_space(buf[i])) {
			if (o && buf[o - 1] != ' ')
				buf[o++] = ' ';
		} else {
			buf[o++] = buf[i];
		}
	}
	while (o && buf[o - 1] == ' ')
		o--;
	buf[o] = '\0';
	return sv_push(vals, strdup(buf)) == 0 ? 0 : r_oom(r);
}

static int map_name(run *r, idb_profile *out)
{
	const idb_attrmap *m = r->m;
	json_t *tr = r->trace ? json_object() : NULL;
	if (tr) {
		json_object_set_new(r->trace, "display_name", tr);
		json_object_set_new(tr, "candidates", jcands(&m->name_c));
	}
	long ai;
	size_t ci = 0;
	int rc = find_attr(r, &m->name_c, &ai, &ci);
	if (rc)
		return rc;
	strvec vals = {0};
	const char *src = NULL;
	if (ai >= 0) {
		mark_used(r, (size_t)ai);
		src = r->id->attrs[ai].name;
		if (sv_push(&vals, strdup(r->id->attrs[ai].values[0])) != 0)
			return r_oom(r);
	} else if (m->ntmpl) {
		if ((rc = render_template(r, &vals)))
			return rc;
		if (vals.n)
			src = "name_template";
	}
	if (vals.n && !utf8_valid((const unsigned char *)vals.v[0], strlen(vals.v[0]))) {
		sv_free(&vals);
		return bad_utf8(r, "name", src);
	}
	if (tr) {
		json_object_set_new(tr, "source", jstr(src));
		json_object_set_new(tr, "input", vals.n ? jstr(vals.v[0]) : json_null());
	}
	if (vals.n)
		rc = run_tfs(r, &m->name_t, &vals, tr);
	if (rc == 0 && !(out->display_name = trimmed_dup(vals.n ? vals.v[0] : "")))
		rc = r_oom(r);
	sv_free(&vals);
	if (rc == 0 && tr)
		json_object_set_new(tr, "value", jstr(out->display_name));
	return rc;
}

static void detect_overage(run *r, idb_profile *out)
{
	const char *which = NULL;
	for (size_t i = 0; i < r->m->noverage && !which; i++) {
		for (size_t k = 0; k < r->id->nattrs && !which; k++) {
			const idb_attr *a = &r->id->attrs[k];
			if (strcmp(a->name, r->m->overage[i]) != 0)
				continue;
			mark_used(r, k);
			for (size_t v = 0; v < a->nvalues && !which; v++)
				if (a->values[v][0] && strcasecmp(a->values[v], "false") != 0)
					which = a->name;
		}
	}
	out->groups_overage = which != NULL;
	if (r->trace)
		json_object_set_new(r->trace, "groups_overage",
				    json_pack("{s:b, s:o}", "detected", which != NULL, "attribute", jstr(which)));
}

/* Lowers *best to the first role rule (by index) matching s. */
static int role_check(run *r, const char *s, uint64_t hs, size_t *best, const char **best_val)
{
	const idb_attrmap *m = r->m;
	size_t lb = hidx_find(&m->role_h, m->role_exact, m->nrole_exact, s, hs);
	if (lb < m->nrole_exact && strcmp(m->role_exact[lb].key, s) == 0 && m->role_exact[lb].idx < *best) {
		*best = m->role_exact[lb].idx;
		*best_val = s;
	}
	size_t len = strlen(s);
	if (m->nrole_re && m->role_re[0] < *best && !pf_maybe(r, &m->role_pf, s, len))
		return 0;
	for (size_t j = 0; j < m->nrole_re && m->role_re[j] < *best; j++) {
		const rolerule *rr = &m->roles[m->role_re[j]];
		int rc = rx_exec(r, &rr->p.re, s, len, rr->p.field);
		if (rc < 0)
			return rc;
		if (rc) {
			*best = m->role_re[j];
			*best_val = s;
			break;
		}
	}
	return 0;
}

typedef struct gstate {
	idb_profile *out;
	size_t cap;
	strset set;
	size_t best;
	const char *best_val;
} gstate;

/* Adds a mapped group name (copied) to the profile, role-checking new ones. */
static int add_group(run *r, gstate *g, const char *name, json_t *rules, size_t rule)
{
	char *t = trimmed_dup(name);
	if (!t)
		return r_oom(r);
	if (rules) {
		char rn[FIELD_LEN];
		set_field(rn, "group_mapping", rule, NULL);
		json_array_append_new(rules, json_pack("{s:s, s:o}", "rule", rn, "group", jstr(t)));
	}
	uint64_t ht = hash_str(t);
	if (!*t || set_has(&g->set, t, ht)) {
		free(t);
		return 0;
	}
	idb_profile *out = g->out;
	if (out->ngroups >= IDB_ATTR_MAX_GROUPS) {
		free(t);
		return idb_err_set(r->err, IDB_ETOOBIG, "groups",
				   "the mapping gives more than %d groups; narrow it with group_include or group_exclude",
				   IDB_ATTR_MAX_GROUPS);
	}
	if (out->ngroups == g->cap) {
		size_t nc = g->cap ? g->cap * 2 : 16;
		char **ng = realloc(out->groups, nc * sizeof(char *));
		if (!ng) {
			free(t);
			return r_oom(r);
		}
		out->groups = ng;
		g->cap = nc;
	}
	out->groups[out->ngroups++] = t;
	if (set_insert(&g->set, t, ht) < 0)
		return r_oom(r);
	return role_check(r, t, ht, &g->best, &g->best_val);
}

/* Maps one kept group value; rules are applied in their configured order. */
static int map_value(run *r, gstate *g, const char *v, uint64_t hv, json_t *mtrace)
{
	const idb_attrmap *m = r->m;
	json_t *rules = mtrace ? json_array() : NULL;
	size_t ei = hidx_find(&m->map_h, m->map_exact, m->nmap_exact, v, hv), ri = 0;
	bool any = false;
	int rc = 0;
	size_t len = strlen(v);
	if (m->nmap_re && !pf_maybe(r, &m->map_pf, v, len))
		ri = m->nmap_re;
	for (;;) {
		bool ex_ok = ei < m->nmap_exact && strcmp(m->map_exact[ei].key, v) == 0;
		bool re_ok = ri < m->nmap_re;
		if (!ex_ok && !re_ok)
			break;
		if (ex_ok && (!re_ok || m->map_exact[ei].idx < m->map_re[ri])) {
			size_t idx = m->map_exact[ei++].idx;
			any = true;
			if ((rc = add_group(r, g, m->maps[idx].group, rules, idx)))
				break;
			continue;
		}
		size_t idx = m->map_re[ri++];
		const maprule *mr = &m->maps[idx];
		if ((rc = rx_exec(r, &mr->p.re, v, len, mr->p.field)) < 0)
			break;
		if (rc == 0)
			continue;
		rc = 0;
		any = true;
		if (mr->expand) {
			char buf[IDB_ATTR_MAX_VALUE_LEN + 1];
			if (!expand_refs(buf, mr->group, v, pcre2_get_ovector_pointer(r->md), pcre2_get_ovector_count(r->md))) {
				rc = idb_err_set(r->err, IDB_ETOOBIG, mr->p.field, "the mapped group name is longer than %d bytes",
						 IDB_ATTR_MAX_VALUE_LEN);
				break;
			}
			rc = add_group(r, g, buf, rules, idx);
		} else {
			rc = add_group(r, g, mr->group, rules, idx);
		}
		if (rc)
			break;
	}
	const char *outcome = any ? "mapped" : m->mapping_only ? "dropped (group_mapping_only)" : "passed through";
	if (rc == 0 && !any && !m->mapping_only)
		rc = add_group(r, g, v, NULL, 0);
	if (mtrace)
		json_array_append_new(mtrace,
				      json_pack("{s:o, s:o, s:s}", "value", jstr(v), "rules", rules, "outcome", outcome));
	else
		json_decref(rules);
	return rc;
}

static int map_groups(run *r, idb_profile *out)
{
	const idb_attrmap *m = r->m;
	json_t *tr = r->trace ? json_object() : NULL;
	if (tr) {
		json_object_set_new(r->trace, "groups", tr);
		json_object_set_new(tr, "candidates", jcands(&m->group_c));
	}
	long ai;
	size_t ci = 0;
	int rc = find_attr(r, &m->group_c, &ai, &ci);
	if (rc)
		return rc;
	strvec vals = {0}, kept = {0};
	gstate g = {.out = out, .best = m->nroles};
	strset seen = {0};
	json_t *filtered = tr ? json_array() : NULL, *mtrace = tr ? json_array() : NULL;
	const char *const *in = NULL;
	size_t nin = 0;
	if (ai >= 0) {
		const idb_attr *a = &r->id->attrs[ai];
		mark_used(r, (size_t)ai);
		in = (const char *const *)a->values;
		nin = a->nvalues;
		for (size_t i = 0; i < nin && rc == 0; i++)
			if (!utf8_valid((const unsigned char *)in[i], strlen(in[i])))
				rc = bad_utf8(r, "groups", a->name);
		if (tr) {
			json_object_set_new(tr, "source", jstr(a->name));
			json_object_set_new(tr, "input", jarr(in, nin));
		}
	} else if (tr) {
		json_object_set_new(tr, "source", json_null());
	}
	bool owned = false;
	if (rc == 0 && nin && m->group_t.n) {
		rc = run_tfs_in(r, &m->group_t, in, nin, &vals, tr);
		in = (const char *const *)vals.v;
		nin = vals.n;
		owned = true;
	}
	/* Normalise: trim, drop empty values and duplicates (an owned value that
	 * needs no trimming is moved, not copied). */
	for (size_t i = 0; i < nin && rc == 0; i++) {
		const char *v = in[i];
		size_t b = 0, e = strlen(v);
		while (b < e && is_space(v[b]))
			b++;
		while (e > b && is_space(v[e - 1]))
			e--;
		if (b == e)
			continue;
		char *t;
		if (owned && b == 0 && v[e] == '\0') {
			t = vals.v[i];
			vals.v[i] = NULL;
		} else if (!(t = strndup(v + b, e - b))) {
			rc = r_oom(r);
			break;
		}
		uint64_t ht = hash_str(t);
		if (set_has(&seen, t, ht))
			free(t);
		else if (sv_push(&kept, t) != 0 || set_insert(&seen, t, ht) < 0)
			rc = r_oom(r); /* a pushed t is owned by kept */
	}
	if (tr)
		json_object_set_new(tr, "values", jvec(&kept));
	/* Filters, then mapping and role rules, value by value. */
	for (size_t i = 0; i < kept.n && rc == 0; i++) {
		const char *v = kept.v[i];
		const char *reason = NULL;
		if (m->nincl) {
			bool hit = false;
			for (size_t k = 0; k < m->nincl && !hit && rc == 0; k++) {
				int h = pat_match(r, &m->incl[k], v);
				if (h < 0)
					rc = h;
				hit = h > 0;
			}
			if (!hit)
				reason = "matched no group_include pattern";
		}
		for (size_t k = 0; k < m->nexcl && !reason && rc == 0; k++) {
			int h = pat_match(r, &m->excl[k], v);
			if (h < 0)
				rc = h;
			else if (h)
				reason = m->excl[k].field;
		}
		if (rc)
			break;
		if (reason) {
			if (filtered)
				json_array_append_new(filtered, json_pack("{s:o, s:s}", "value", jstr(v), "reason", reason));
			continue;
		}
		uint64_t hv = hash_str(v);
		if ((rc = role_check(r, v, hv, &g.best, &g.best_val)))
			break;
		rc = map_value(r, &g, v, hv, mtrace);
	}
	if (tr) {
		json_object_set_new(tr, "filtered_out", filtered);
		json_object_set_new(tr, "mapping", mtrace);
		json_t *res = json_array();
		for (size_t i = 0; res && i < out->ngroups; i++)
			json_array_append_new(res, jstr(out->groups[i]));
		json_object_set_new(tr, "result", res);
	} else {
		json_decref(filtered);
		json_decref(mtrace);
	}
	if (rc == 0 && g.best < m->nroles) {
		int rr = m->roles[g.best].role;
		out->role = rr < m->max_role ? rr : m->max_role;
		out->role_from_rule = true;
	}
	if (r->trace) {
		bool hit = g.best < m->nroles;
		int rr = hit ? m->roles[g.best].role : -1;
		json_t *role = json_object();
		char rn[FIELD_LEN];
		set_field(rn, "role_rules", g.best, NULL);
		json_object_set_new(role, "rule", hit ? jstr(rn) : json_null());
		json_object_set_new(role, "matched_group", hit ? jstr(g.best_val) : json_null());
		json_object_set_new(role, "rule_role", hit ? jstr(role_names[rr]) : json_null());
		json_object_set_new(role, "max_role", jstr(role_names[m->max_role]));
		json_object_set_new(role, "capped", json_boolean(hit && rr > m->max_role));
		json_object_set_new(role, "default_role", jstr(role_names[m->default_role]));
		json_object_set_new(role, "role", jstr(role_names[out->role]));
		json_object_set_new(role, "role_from_rule", json_boolean(out->role_from_rule));
		json_object_set_new(r->trace, "role", role);
	}
	set_free(&seen);
	set_free(&g.set);
	sv_free(&kept);
	sv_free(&vals);
	return rc;
}

static int map_run(run *r, idb_profile *out)
{
	memset(out, 0, sizeof(*out));
	out->role = r->m->default_role;
	int rc = check_identity(r);
	if (rc == 0)
		rc = map_email(r, out);
	if (rc == 0)
		rc = map_name(r, out);
	if (rc == 0) {
		detect_overage(r, out);
		rc = map_groups(r, out);
	}
	return rc;
}

int idb_attrmap_apply(const idb_attrmap *m, const idb_identity *id, idb_profile *out, idb_err *err)
{
	memset(out, 0, sizeof(*out));
	run r = {.m = m, .id = id, .err = err};
	if (!(r.md = pcre2_match_data_create(m->max_ncap + 1, NULL)))
		return OOM(err);
	int rc = map_run(&r, out);
	pcre2_match_data_free(r.md);
	if (rc != 0) {
		idb_profile_clear(out);
		out->role = m->default_role;
	}
	return rc;
}

static const char *code_name(int code)
{
	switch (code) {
	case IDB_EINVAL:
		return "invalid";
	case IDB_ETOOBIG:
		return "too_big";
	case IDB_EINTERNAL:
		return "internal";
	default:
		return "error";
	}
}

int idb_attrmap_explain(const idb_attrmap *m, const idb_identity *id, char **out_json, idb_err *err)
{
	*out_json = NULL;
	idb_err merr;
	idb_err_clear(&merr);
	json_t *root = json_object();
	bool fits = id->nattrs <= IDB_ATTR_MAX_ATTRS;
	run r = {.m = m, .id = id, .err = &merr, .trace = root};
	r.used = fits && id->nattrs ? calloc(id->nattrs, sizeof(bool)) : NULL;
	r.md = pcre2_match_data_create(m->max_ncap + 1, NULL);
	if (!root || !r.md || (fits && id->nattrs && !r.used)) {
		json_decref(root);
		free(r.used);
		pcre2_match_data_free(r.md);
		return OOM(err);
	}
	idb_profile p;
	int rc = map_run(&r, &p);
	if (rc == 0) {
		json_t *groups = json_array();
		for (size_t i = 0; groups && i < p.ngroups; i++)
			json_array_append_new(groups, jstr(p.groups[i]));
		json_object_set_new(root, "profile",
				    json_pack("{s:o, s:o, s:o*, s:s, s:b, s:b}", "email", jstr(p.email), "display_name",
					      jstr(p.display_name), "groups", groups, "role", role_names[p.role],
					      "role_from_rule", p.role_from_rule, "groups_overage", p.groups_overage));
	} else {
		json_object_set_new(root, "error", json_pack("{s:s, s:s, s:s}", "code", code_name(rc), "field",
							      merr.field, "message", merr.msg));
	}
	json_t *unused = json_array();
	for (size_t i = 0; r.used && unused && i < id->nattrs; i++)
		if (!r.used[i] && id->attrs[i].name)
			json_array_append_new(unused, jstr(id->attrs[i].name));
	json_object_set_new(root, "unused_attributes", unused);
	idb_profile_clear(&p);
	free(r.used);
	pcre2_match_data_free(r.md);
	if (rc == IDB_EINTERNAL) {
		json_decref(root);
		if (err)
			*err = merr;
		return rc;
	}
	*out_json = json_dumps(root, JSON_COMPACT);
	json_decref(root);
	return *out_json ? 0 : OOM(err);
}

static bool cand_mentions(const candlist *c, const char *name)
{
	for (size_t i = 0; i < c->n; i++) {
		const cand *cd = &c->v[i];
		if (!cd->is_re) {
			if (strcmp(cd->name, name) == 0)
				return true;
		} else if (cd->re.code) {
			pcre2_match_data *md = pcre2_match_data_create_from_pattern(cd->re.code, NULL);
			int rc = md ? pcre2_match(cd->re.code, (PCRE2_SPTR)name, strlen(name), 0, 0, md, NULL) : -1;
			pcre2_match_data_free(md);
			if (rc >= 0)
				return true;
		}
	}
	return false;
}

bool idb_attrmap_mentions(const idb_attrmap *m, const char *attr_name)
{
	if (cand_mentions(&m->email_c, attr_name) || cand_mentions(&m->name_c, attr_name) ||
	    cand_mentions(&m->group_c, attr_name))
		return true;
	for (size_t i = 0; i < m->ntmpl; i++)
		if (m->tmpl[i].is_ref && strcmp(m->tmpl[i].text, attr_name) == 0)
			return true;
	for (size_t i = 0; i < m->noverage; i++)
		if (strcmp(m->overage[i], attr_name) == 0)
			return true;
	return false;
}
