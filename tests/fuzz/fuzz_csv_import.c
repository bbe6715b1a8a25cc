/* SPDX-License-Identifier: AGPL-3.0-or-later */
/* libFuzzer target for the CSV import parser (provisioning/csv_import.c).
 * Input: the uploaded file, as is. Every accepted file's rows must satisfy
 * the parser's invariants (counts add up, lines increase, messages bounded),
 * and the error report written from them must parse back to the same cells
 * (the report is meant to be fixed and uploaded again). */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "csv_import.h"

static void check(int ok)
{
	if (!ok)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	idb_import_file *f = NULL;
	idb_err err;
	idb_err_clear(&err);
	int rc = idb_csv_import_parse(&f, (const char *)data, size, &err);
	if (rc != 0) {
		check(f == NULL && (rc == IDB_EINVAL || rc == IDB_EINTERNAL) && err.msg[0]);
		return 0;
	}
	check(f->nrows >= 1 && f->nrows <= IDB_IMPORT_MAX_ROWS);
	check(f->nadd + f->nskip + f->nerror == f->nrows);
	idb_csv_out o = {0};
	static const char *const hdr[] = {"email", "name", "role", "groups", "error"};
	check(idb_csv_out_record(&o, hdr, 5, false, NULL) == 0);
	for (size_t i = 0; i < f->nrows; i++) {
		const idb_import_row *r = &f->rows[i];
		check(r->line >= 2 && (i == 0 || r->line > f->rows[i - 1].line));
		check(strlen(r->message) < IDB_IMPORT_MSG_MAX);
		check((r->action == IDB_IMPORT_ADD) == (r->message[0] == '\0'));
		check(r->ngroups <= IDB_IMPORT_MAX_GROUPS);
		const char *rec[5] = {r->cell[0], r->cell[1], r->cell[2], r->cell[3], r->message};
		check(idb_csv_out_record(&o, rec, 5, true, NULL) == 0);
	}
	idb_import_file *back = NULL;
	if (idb_csv_import_parse(&back, o.data, o.len, &err) == 0 && back->nrows == f->nrows) {
		for (size_t i = 0; i < f->nrows; i++)
			for (int c = 0; c < IDB_IMPORT_NCOLS; c++)
				check(strcmp(back->rows[i].cell[c], f->rows[i].cell[c]) == 0);
	}
	idb_import_file_free(back);
	idb_csv_out_clear(&o);
	idb_import_file_free(f);
	return 0;
}
