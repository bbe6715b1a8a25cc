/* SPDX-License-Identifier: AGPL-3.0-or-later */
/* The CSV file of the user import (API.md "CSV import format"): parsing with
 * libcsv (RFC 4180, strict quoting) into rows that know the physical line
 * they start on, the row rules that need no database, and the writer of the
 * error report (errors.csv). Pure: no I/O, no clock, no globals, so it is
 * unit-tested (tests/unit/test_csv_import.c) and fuzzed
 * (tests/fuzz/fuzz_csv_import.c). The rules that need the organisation's
 * data (the e-mail is already a user, a group exists) are applied by
 * import.c through idb_import_row_skip / idb_import_row_error.
 *
 * The whole file is refused (IDB_EINVAL, field "file", one message saying
 * what to do) when it is empty; is not UTF-8 text (a NUL byte, a control
 * character other than TAB/CR/LF, invalid UTF-8); has malformed quoting (a
 * quote inside an unquoted field, text after a closing quote, a quoted field
 * never closed); has a bad header; has no data rows; or has more than
 * IDB_IMPORT_MAX_ROWS data rows. A UTF-8 byte order mark is skipped.
 *
 * Header: column names are matched case-insensitively after trimming, in any
 * order. `email` and `role` are required, `name` and `groups` optional;
 * `error` (the extra column of errors.csv) is ignored so that a corrected
 * error report can be uploaded as it is. Any other name, an empty name or a
 * repeated one refuses the file.
 *
 * Rows: lines that are blank, and records whose cells are all empty (as
 * spreadsheets export below the data), are not rows. A cell is trimmed of
 * spaces and tabs; a leading "'" in front of = + - @ TAB CR (the neutralising
 * quote errors.csv adds) is removed. Rules, in this order:
 *   email   required, idb_email_valid          -> error "Invalid email format"
 *   email   seen earlier in the file (ASCII case-insensitive; valid e-mails
 *           only)                              -> skip  "Duplicate email"
 *   role    exactly readonly|train|configure|admin; an empty role is
 *           invalid (no default)               -> error "Invalid role"
 *   name    optional, at most 256 characters, no control characters
 *                                              -> error "Invalid name (...)"
 *   groups  optional, names separated by ';' or '|', trimmed, empty entries
 *           and repeats dropped, at most IDB_IMPORT_MAX_GROUPS names of at
 *           most 256 characters                -> error "Too many groups ..." /
 *                                                 "Invalid group name ..."
 *   cells   beyond the header's columns must be empty
 *                                              -> error "Too many fields ..."
 * A skip replaces the errors of its row; several errors of one row are
 * joined with "; ". */
#ifndef IDB_CSV_IMPORT_H
#define IDB_CSV_IMPORT_H

#include <stdbool.h>
#include <stddef.h>

#include "err.h"

#define IDB_IMPORT_MAX_ROWS 1000
#define IDB_IMPORT_MAX_GROUPS 50
#define IDB_IMPORT_MSG_MAX 512

typedef enum { IDB_IMPORT_ADD = 0, IDB_IMPORT_SKIP, IDB_IMPORT_ERROR } idb_import_action;

/* The four columns, in the template's order. */
enum { IDB_IMPORT_COL_EMAIL = 0, IDB_IMPORT_COL_NAME, IDB_IMPORT_COL_ROLE, IDB_IMPORT_COL_GROUPS, IDB_IMPORT_NCOLS };

typedef struct idb_import_row {
	long line;                      /* physical line (1-based) the record starts on */
	char *cell[IDB_IMPORT_NCOLS];   /* the cells as uploaded (not trimmed); "" for an absent column */
	char *email;                    /* trimmed */
	char *name;                     /* trimmed, "" when none */
	int role;                       /* idb_role, -1 when invalid */
	char **groups;                  /* trimmed, unique names, in file order */
	size_t ngroups;
	idb_import_action action;
	char message[IDB_IMPORT_MSG_MAX]; /* "" for add */
} idb_import_row;

typedef struct idb_import_file {
	idb_import_row *rows;
	size_t nrows;
	size_t nadd, nskip, nerror; /* kept current by the functions below */
} idb_import_file;

/* Parses data (len bytes, need not be NUL-terminated). *out is the caller's
 * (idb_import_file_free). IDB_EINVAL with field "file" for a refused file,
 * IDB_EINTERNAL when memory runs out. */
int idb_csv_import_parse(idb_import_file **out, const char *data, size_t len, idb_err *err);
void idb_import_file_free(idb_import_file *f);

/* Row verdicts for the rules import.c checks, keeping f's counts current.
 * skip replaces the action and message (a skipped row has no errors);
 * error appends "; "-joined (truncated with "..." when it does not fit) and
 * is ignored for a skipped row. */
void idb_import_row_skip(idb_import_file *f, idb_import_row *r, const char *msg);
void idb_import_row_error(idb_import_file *f, idb_import_row *r, const char *msg);

/* "add" | "skip" | "error". */
const char *idb_import_action_name(idb_import_action a);

/* --- CSV output (errors.csv, the template) --- */

typedef struct idb_csv_out {
	char *data; /* owned; NUL-terminated once anything was written */
	size_t len, cap;
} idb_csv_out;

/* Appends one record: every cell quoted ("" doubled), CRLF at the end. With
 * neutralise, a cell starting with = + - @ TAB or CR gets a leading "'" so
 * that a spreadsheet shows it as text instead of running it as a formula.
 * IDB_EINTERNAL on OOM. */
int idb_csv_out_record(idb_csv_out *o, const char *const *cells, size_t n, bool neutralise, idb_err *err);
/* Frees the buffer and zeroes o; NULL is a no-op. */
void idb_csv_out_clear(idb_csv_out *o);

/* The template served by GET /api/v1/import/template: the header and two
 * example rows (static storage). */
const char *idb_csv_import_template(void);

#endif
