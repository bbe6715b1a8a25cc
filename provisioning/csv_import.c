/* SPDX-License-Identifier: AGPL-3.0-or-later */
#include "csv_import.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <csv.h>

#include "roles.h"
#include "util.h"

/* Fields kept per record; a wider record can only be a refused header or a
 * row with cells beyond the header (which are checked for emptiness only). */
#define MAXF 64
#define NAME_MAX_CHARS 256
#define GROUP_MAX_CHARS 256

static const char *const col_names[IDB_IMPORT_NCOLS] = {"email", "name", "role", "groups"};

const char *idb_import_action_name(idb_import_action a)
{
	switch (a) {
	case IDB_IMPORT_ADD: return "add";
	case IDB_IMPORT_SKIP: return "skip";
	default: return "error";
	}
}

/* --- small string helpers --- */

static bool is_blank_char(unsigned char c)
{
	return c == ' ' || c == '\t';
}

/* [*s, *s + *n) without leading and trailing spaces and tabs. */
static void trim_span(const char **s, size_t *n)
{
	while (*n && is_blank_char((unsigned char)**s)) {
		(*s)++;
		(*n)--;
	}
	while (*n && is_blank_char((unsigned char)(*s)[*n - 1]))
		(*n)--;
}

static char *dup_span(const char *s, size_t n)
{
	char *o = malloc(n + 1);
	if (o) {
		memcpy(o, s, n);
		o[n] = '\0';
	}
	return o;
}

static char *dup_trimmed(const char *s)
{
	size_t n = strlen(s);
	trim_span(&s, &n);
	return dup_span(s, n);
}

static unsigned char ascii_lower(unsigned char c)
{
	return c >= 'A' && c <= 'Z' ? (unsigned char)(c - 'A' + 'a') : c;
}

static int ascii_casecmp(const char *a, const char *b)
{
	for (;; a++, b++) {
		unsigned char x = ascii_lower((unsigned char)*a), y = ascii_lower((unsigned char)*b);
		if (x != y || !x)
			return (int)x - (int)y;
	}
}

/* C0 controls, DEL and the C1 controls U+0080..U+009F (C2 80..C2 9F). */
static bool has_control(const char *s)
{
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (*p < 0x20 || *p == 0x7f)
			return true;
		if (*p == 0xC2 && p[1] >= 0x80 && p[1] <= 0x9F)
			return true;
	}
	return false;
}

/* Length of the valid UTF-8 sequence at p (at most n bytes), 0 when invalid
 * (overlong forms, surrogates and values above U+10FFFF included). */
static size_t utf8_seq(const unsigned char *p, size_t n)
{
	unsigned char c = p[0];
	if (c < 0x80)
		return 1;
	size_t len;
	uint32_t cp, min;
	if (c >= 0xC2 && c <= 0xDF) {
		len = 2;
		cp = c & 0x1F;
		min = 0x80;
	} else if (c >= 0xE0 && c <= 0xEF) {
		len = 3;
		cp = c & 0x0F;
		min = 0x800;
	} else if (c >= 0xF0 && c <= 0xF4) {
		len = 4;
		cp = c & 0x07;
		min = 0x10000;
	} else {
		return 0;
	}
	if (n < len)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((p[i] & 0xC0) != 0x80)
			return 0;
		cp = (cp << 6) | (p[i] & 0x3F);
	}
	if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
		return 0;
	return len;
}

/* Refuses anything that is not UTF-8 text, naming the line. */
static int check_text(const char *data, size_t len, idb_err *err)
{
	static const char how[] = "Save the spreadsheet as \"CSV UTF-8\" and upload that file.";
	if (len >= 2 && (((unsigned char)data[0] == 0xFF && (unsigned char)data[1] == 0xFE) ||
			 ((unsigned char)data[0] == 0xFE && (unsigned char)data[1] == 0xFF)))
		return idb_err_set(err, IDB_EINVAL, "file", "The file is UTF-16 text; only UTF-8 is accepted. %s", how);
	long line = 1;
	const unsigned char *p = (const unsigned char *)data;
	for (size_t i = 0; i < len;) {
		unsigned char c = p[i];
		if (c == '\n' || (c == '\r' && (i + 1 >= len || p[i + 1] != '\n')))
			line++;
		if (c == 0)
			return idb_err_set(err, IDB_EINVAL, "file",
					   "The file is not a text file (it contains a NUL byte on line %ld). %s", line, how);
		if ((c < 0x20 && c != '\t' && c != '\r' && c != '\n') || c == 0x7f)
			return idb_err_set(err, IDB_EINVAL, "file",
					   "The file is not a text file (it contains the control character 0x%02X on line %ld). %s",
					   c, line, how);
		size_t k = utf8_seq(p + i, len - i);
		if (k == 0)
			return idb_err_set(err, IDB_EINVAL, "file", "The file is not valid UTF-8 text (line %ld). %s", line,
					   how);
		i += k;
	}
	return 0;
}

/* --- rows and verdicts --- */

static size_t *count_of(idb_import_file *f, idb_import_action a)
{
	return a == IDB_IMPORT_ADD ? &f->nadd : a == IDB_IMPORT_SKIP ? &f->nskip : &f->nerror;
}

static void set_action(idb_import_file *f, idb_import_row *r, idb_import_action a)
{
	(*count_of(f, r->action))--;
	r->action = a;
	(*count_of(f, a))++;
}

void idb_import_row_skip(idb_import_file *f, idb_import_row *r, const char *msg)
{
	set_action(f, r, IDB_IMPORT_SKIP);
	idb_strlcpy(r->message, msg, sizeof(r->message));
}

void idb_import_row_error(idb_import_file *f, idb_import_row *r, const char *msg)
{
	if (r->action == IDB_IMPORT_SKIP)
		return;
	set_action(f, r, IDB_IMPORT_ERROR);
	size_t have = strlen(r->message);
	if (have >= 3 && strcmp(r->message + have - 3, "...") == 0)
		return; /* already cut */
	char tmp[2 * IDB_IMPORT_MSG_MAX];
	int w = snprintf(tmp, sizeof(tmp), "%s%s%s", r->message, have ? "; " : "", msg);
	if (w >= 0 && (size_t)w < sizeof(r->message)) {
		memcpy(r->message, tmp, (size_t)w + 1);
		return;
	}
	/* Cut at a UTF-8 boundary and mark the cut. */
	size_t n = sizeof(r->message) - 4;
	while (n > 0 && ((unsigned char)tmp[n] & 0xC0) == 0x80)
		n--;
	memcpy(r->message, tmp, n);
	memcpy(r->message + n, "...", 4);
}

static void row_clear(idb_import_row *r)
{
	for (int c = 0; c < IDB_IMPORT_NCOLS; c++)
		free(r->cell[c]);
	free(r->email);
	free(r->name);
	for (size_t i = 0; i < r->ngroups; i++)
		free(r->groups[i]);
	free(r->groups);
}

void idb_import_file_free(idb_import_file *f)
{
	if (!f)
		return;
	for (size_t i = 0; i < f->nrows; i++)
		row_clear(&f->rows[i]);
	free(f->rows);
	free(f);
}

/* --- parser state --- */

typedef struct pstate {
	idb_import_file *f;
	size_t caprows;
	/* the record being read */
	char *fields[MAXF];
	size_t nfields;       /* stored (<= MAXF) */
	bool overflow_filled; /* a field beyond MAXF is not blank */
	bool oom;
	/* lines */
	long line;      /* line of the segment being fed */
	long row_start; /* line the current record started on */
	bool in_row;
	/* header */
	bool have_header;
	size_t header_n;             /* columns up to the last named one */
	int field_of_col[IDB_IMPORT_NCOLS]; /* -1: absent */
	int rc;
	idb_err *err;
} pstate;

static void reset_record(pstate *st)
{
	for (size_t i = 0; i < st->nfields; i++)
		free(st->fields[i]);
	st->nfields = 0;
	st->overflow_filled = false;
}

static void on_field(void *s, size_t n, void *data)
{
	pstate *st = data;
	if (st->rc != 0)
		return;
	const char *v = s ? s : "";
	if (st->nfields < MAXF) {
		char *copy = dup_span(v, s ? n : 0);
		if (!copy) {
			st->oom = true;
			return;
		}
		st->fields[st->nfields++] = copy;
	} else {
		const char *t = v;
		size_t tn = s ? n : 0;
		trim_span(&t, &tn);
		if (tn)
			st->overflow_filled = true;
	}
}

static bool record_blank(const pstate *st)
{
	if (st->overflow_filled)
		return false;
	for (size_t i = 0; i < st->nfields; i++) {
		const char *t = st->fields[i];
		size_t n = strlen(t);
		trim_span(&t, &n);
		if (n)
			return false;
	}
	return true;
}

static int header(pstate *st)
{
	static const char cols[] = "The columns are email, name, role and groups (download the template)";
	long line = st->row_start;
	if (st->overflow_filled)
		return idb_err_set(st->err, IDB_EINVAL, "file", "The header on line %ld has too many columns. %s.", line,
				   cols);
	size_t last = 0;
	for (size_t i = 0; i < st->nfields; i++) {
		char *name = dup_trimmed(st->fields[i]);
		if (!name)
			return idb_err_set(st->err, IDB_EINTERNAL, NULL, "out of memory");
		bool named = name[0] != '\0';
		free(name);
		if (named)
			last = i + 1;
	}
	st->header_n = last;
	for (int c = 0; c < IDB_IMPORT_NCOLS; c++)
		st->field_of_col[c] = -1;
	for (size_t i = 0; i < last; i++) {
		char *name = dup_trimmed(st->fields[i]);
		if (!name)
			return idb_err_set(st->err, IDB_EINTERNAL, NULL, "out of memory");
		int col = -2;
		for (int c = 0; c < IDB_IMPORT_NCOLS; c++)
			if (ascii_casecmp(name, col_names[c]) == 0)
				col = c;
		if (ascii_casecmp(name, "error") == 0)
			col = -1;
		int rc = 0;
		if (!name[0])
			rc = idb_err_set(st->err, IDB_EINVAL, "file", "Column %zu of the header on line %ld has no name. %s.",
					 i + 1, line, cols);
		else if (col == -2)
			rc = idb_err_set(st->err, IDB_EINVAL, "file",
					 "Unknown column \"%.60s\" in the header on line %ld: the first line must name the "
					 "columns. %s.",
					 name, line, cols);
		else if (col >= 0 && st->field_of_col[col] >= 0)
			rc = idb_err_set(st->err, IDB_EINVAL, "file", "Column \"%s\" appears twice in the header on line %ld.",
					 col_names[col], line);
		free(name);
		if (rc != 0)
			return rc;
		if (col >= 0)
			st->field_of_col[col] = (int)i;
	}
	if (st->field_of_col[IDB_IMPORT_COL_EMAIL] < 0 || st->field_of_col[IDB_IMPORT_COL_ROLE] < 0)
		return idb_err_set(st->err, IDB_EINVAL, "file", "The header on line %ld has no \"%s\" column. %s.", line,
				   st->field_of_col[IDB_IMPORT_COL_EMAIL] < 0 ? "email" : "role", cols);
	st->have_header = true;
	return 0;
}

/* A cell as errors.csv wrote it: "'=..." back to "=...". */
static const char *unneutralise(const char *v)
{
	if (v[0] == '\'' && v[1] && strchr("=+-@\t\r", v[1]))
		return v + 1;
	return v;
}

static int split_groups(idb_import_file *f, idb_import_row *r, idb_err *err)
{
	const char *s = r->cell[IDB_IMPORT_COL_GROUPS];
	size_t total = 0;
	bool too_long = false;
	while (*s) {
		size_t n = strcspn(s, ";|");
		const char *g = s;
		size_t gn = n;
		trim_span(&g, &gn);
		s += n;
		if (*s)
			s++;
		if (!gn)
			continue;
		char *name = dup_span(g, gn);
		if (!name)
			return idb_err_set(err, IDB_EINTERNAL, NULL, "out of memory");
		bool seen = false;
		for (size_t i = 0; i < r->ngroups && !seen; i++)
			seen = ascii_casecmp(r->groups[i], name) == 0;
		if (seen) {
			free(name);
			continue;
		}
		if (idb_utf8_len(name) > GROUP_MAX_CHARS)
			too_long = true;
		if (++total > IDB_IMPORT_MAX_GROUPS || too_long) {
			free(name);
			if (too_long)
				break;
			continue;
		}
		if (!r->groups && !(r->groups = calloc(IDB_IMPORT_MAX_GROUPS, sizeof(char *)))) {
			free(name);
			return idb_err_set(err, IDB_EINTERNAL, NULL, "out of memory");
		}
		r->groups[r->ngroups++] = name;
	}
	if (too_long)
		idb_import_row_error(f, r, "Invalid group name (at most 256 characters)");
	else if (total > IDB_IMPORT_MAX_GROUPS)
		idb_import_row_error(f, r, "Too many groups (at most 50)");
	return 0;
}

static int data_row(pstate *st)
{
	idb_import_file *f = st->f;
	if (f->nrows >= IDB_IMPORT_MAX_ROWS)
		return idb_err_set(st->err, IDB_EINVAL, "file",
				   "The file has more than %d users (line %ld is row %d). Split it into files of at most "
				   "%d rows.",
				   IDB_IMPORT_MAX_ROWS, st->row_start, IDB_IMPORT_MAX_ROWS + 1, IDB_IMPORT_MAX_ROWS);
	if (f->nrows == st->caprows) {
		size_t cap = st->caprows ? st->caprows * 2 : 64;
		idb_import_row *rows = realloc(f->rows, cap * sizeof(*rows));
		if (!rows)
			return idb_err_set(st->err, IDB_EINTERNAL, NULL, "out of memory");
		f->rows = rows;
		st->caprows = cap;
	}
	idb_import_row *r = &f->rows[f->nrows++];
	memset(r, 0, sizeof(*r));
	r->line = st->row_start;
	r->role = -1;
	r->action = IDB_IMPORT_ADD;
	f->nadd++;
	for (int c = 0; c < IDB_IMPORT_NCOLS; c++) {
		int i = st->field_of_col[c];
		const char *v = i >= 0 && (size_t)i < st->nfields ? unneutralise(st->fields[i]) : "";
		if (!(r->cell[c] = strdup(v)))
			return idb_err_set(st->err, IDB_EINTERNAL, NULL, "out of memory");
	}
	if (!(r->email = dup_trimmed(r->cell[IDB_IMPORT_COL_EMAIL])) ||
	    !(r->name = dup_trimmed(r->cell[IDB_IMPORT_COL_NAME])))
		return idb_err_set(st->err, IDB_EINTERNAL, NULL, "out of memory");
	char *role = dup_trimmed(r->cell[IDB_IMPORT_COL_ROLE]);
	if (!role)
		return idb_err_set(st->err, IDB_EINTERNAL, NULL, "out of memory");
	r->role = idb_role_parse(role);
	free(role);

	if (!idb_email_valid(r->email))
		idb_import_row_error(f, r, "Invalid email format");
	if (r->role < 0)
		idb_import_row_error(f, r, "Invalid role");
	if (idb_utf8_len(r->name) > NAME_MAX_CHARS)
		idb_import_row_error(f, r, "Invalid name (at most 256 characters)");
	else if (has_control(r->name))
		idb_import_row_error(f, r, "Invalid name (control characters are not allowed)");
	int rc = split_groups(f, r, st->err);
	if (rc != 0)
		return rc;
	bool extra = st->overflow_filled;
	for (size_t i = st->header_n; i < st->nfields && !extra; i++) {
		const char *t = st->fields[i];
		size_t n = strlen(t);
		trim_span(&t, &n);
		extra = n > 0;
	}
	if (extra) {
		char msg[96];
		snprintf(msg, sizeof(msg), "Too many fields (the header has %zu columns)", st->header_n);
		idb_import_row_error(f, r, msg);
	}
	return 0;
}

static void on_record(int term, void *data)
{
	(void)term;
	pstate *st = data;
	if (!st->in_row)
		st->row_start = st->line;
	st->in_row = false;
	if (st->rc == 0 && st->oom)
		st->rc = idb_err_set(st->err, IDB_EINTERNAL, NULL, "out of memory");
	if (st->rc == 0 && !record_blank(st))
		st->rc = st->have_header ? data_row(st) : header(st);
	reset_record(st);
}

/* Second occurrences of an e-mail (valid ones, ASCII case-insensitive). */
typedef struct email_ref {
	const char *email;
	size_t idx;
} email_ref;

static int email_ref_cmp(const void *a, const void *b)
{
	const email_ref *x = a, *y = b;
	int c = ascii_casecmp(x->email, y->email);
	if (c)
		return c;
	return x->idx < y->idx ? -1 : x->idx > y->idx;
}

static int mark_duplicates(idb_import_file *f, idb_err *err)
{
	email_ref *refs = malloc((f->nrows ? f->nrows : 1) * sizeof(*refs));
	if (!refs)
		return idb_err_set(err, IDB_EINTERNAL, NULL, "out of memory");
	size_t n = 0;
	for (size_t i = 0; i < f->nrows; i++)
		if (idb_email_valid(f->rows[i].email))
			refs[n++] = (email_ref){f->rows[i].email, i};
	qsort(refs, n, sizeof(*refs), email_ref_cmp);
	for (size_t i = 1; i < n; i++)
		if (ascii_casecmp(refs[i - 1].email, refs[i].email) == 0) {
			idb_import_row *r = &f->rows[refs[i].idx];
			idb_import_row_skip(f, r, "Duplicate email");
		}
	free(refs);
	return 0;
}

static bool segment_blank(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!is_blank_char((unsigned char)s[i]) && s[i] != '\r' && s[i] != '\n')
			return false;
	return true;
}

int idb_csv_import_parse(idb_import_file **out, const char *data, size_t len, idb_err *err)
{
	*out = NULL;
	if (len >= 3 && memcmp(data, "\xEF\xBB\xBF", 3) == 0) {
		data += 3;
		len -= 3;
	}
	int rc = check_text(data, len, err);
	if (rc != 0)
		return rc;
	static const char empty_msg[] =
		"The file is empty. Upload a CSV file whose first line is the header email,name,role,groups "
		"followed by one line per user (download the template).";
	if (segment_blank(data, len))
		return idb_err_set(err, IDB_EINVAL, "file", "%s", empty_msg);

	pstate st;
	memset(&st, 0, sizeof(st));
	st.err = err;
	if (!(st.f = calloc(1, sizeof(*st.f))))
		return idb_err_set(err, IDB_EINTERNAL, NULL, "out of memory");
	struct csv_parser p;
	if (csv_init(&p, CSV_STRICT | CSV_STRICT_FINI | CSV_APPEND_NULL) != 0) {
		free(st.f);
		return idb_err_set(err, IDB_EINTERNAL, NULL, "out of memory");
	}
	/* Fed one segment at a time, each ending at a CR or LF, so a record can
	 * only end on a segment's last byte and the line of every byte is
	 * known: a record starts on the line of the first segment since the
	 * previous record that is not blank. */
	long line = 1;
	size_t pos = 0;
	while (pos < len && st.rc == 0) {
		size_t end = pos;
		while (end < len && data[end] != '\n' && data[end] != '\r')
			end++;
		if (end < len)
			end++;
		if (!st.in_row && !segment_blank(data + pos, end - pos)) {
			st.in_row = true;
			st.row_start = line;
		}
		st.line = line;
		size_t k = csv_parse(&p, data + pos, end - pos, on_field, on_record, &st);
		if (st.rc == 0 && st.oom)
			st.rc = idb_err_set(err, IDB_EINTERNAL, NULL, "out of memory");
		if (st.rc == 0 && k != end - pos)
			st.rc = csv_error(&p) == CSV_EPARSE
					? idb_err_set(err, IDB_EINVAL, "file",
						      "Line %ld is not valid CSV: a field that contains a quote must be enclosed in "
						      "double quotes, with each quote inside it doubled (\"\"), and nothing may follow "
						      "the closing quote.",
						      line)
					: idb_err_set(err, IDB_EINTERNAL, NULL, "out of memory");
		char last = data[end - 1];
		if (last == '\n' || (last == '\r' && !(end < len && data[end] == '\n')))
			line++;
		pos = end;
	}
	if (st.rc == 0) {
		st.line = line;
		if (csv_fini(&p, on_field, on_record, &st) != 0 && st.rc == 0)
			st.rc = idb_err_set(err, IDB_EINVAL, "file",
					    "The record that starts on line %ld has a quoted field that is never closed "
					    "(a missing \").",
					    st.row_start);
	}
	csv_free(&p);
	reset_record(&st);
	rc = st.rc;
	if (rc == 0 && !st.have_header)
		rc = idb_err_set(err, IDB_EINVAL, "file", "%s", empty_msg);
	if (rc == 0 && st.f->nrows == 0)
		rc = idb_err_set(err, IDB_EINVAL, "file",
				 "The file has a header but no users: add one line per user below the header.");
	if (rc == 0)
		rc = mark_duplicates(st.f, err);
	if (rc != 0) {
		idb_import_file_free(st.f);
		return rc;
	}
	*out = st.f;
	return 0;
}

/* --- output --- */

static int out_reserve(idb_csv_out *o, size_t more, idb_err *err)
{
	if (o->len + more + 1 <= o->cap)
		return 0;
	size_t cap = o->cap ? o->cap : 1024;
	while (cap < o->len + more + 1)
		cap *= 2;
	char *d = realloc(o->data, cap);
	if (!d)
		return idb_err_set(err, IDB_EINTERNAL, NULL, "out of memory");
	o->data = d;
	o->cap = cap;
	return 0;
}

int idb_csv_out_record(idb_csv_out *o, const char *const *cells, size_t n, bool neutralise, idb_err *err)
{
	for (size_t i = 0; i < n; i++) {
		const char *v = cells[i] ? cells[i] : "";
		size_t vn = strlen(v);
		/* worst case: every byte a quote, plus quotes, "'", separator */
		if (out_reserve(o, 2 * vn + 4, err) != 0)
			return IDB_EINTERNAL;
		if (i)
			o->data[o->len++] = ',';
		o->data[o->len++] = '"';
		if (neutralise && v[0] && strchr("=+-@\t\r", v[0]))
			o->data[o->len++] = '\'';
		for (; *v; v++) {
			if (*v == '"')
				o->data[o->len++] = '"';
			o->data[o->len++] = *v;
		}
		o->data[o->len++] = '"';
	}
	if (out_reserve(o, 2, err) != 0)
		return IDB_EINTERNAL;
	o->data[o->len++] = '\r';
	o->data[o->len++] = '\n';
	o->data[o->len] = '\0';
	return 0;
}

void idb_csv_out_clear(idb_csv_out *o)
{
	if (!o)
		return;
	free(o->data);
	o->data = NULL;
	o->len = o->cap = 0;
}

const char *idb_csv_import_template(void)
{
	return "email,name,role,groups\r\n"
	       "ada.lovelace@example.com,Ada Lovelace,configure,Engineering;Research\r\n"
	       "grace.hopper@example.com,Grace Hopper,readonly,\r\n";
}
