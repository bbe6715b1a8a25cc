/* SPDX-License-Identifier: AGPL-3.0-or-later */
/* Handlers of the route table, one file per resource. */
#ifndef IDB_API_H
#define IDB_API_H

#include <stdint.h>

#include <jansson.h>

#include "http.h"

/* api_health.c */
int idb_api_healthz(idb_req *req);
int idb_api_readyz(idb_req *req);
int idb_api_metrics(idb_req *req);
int idb_api_root(idb_req *req);

/* api_auth.c */
int idb_api_login_page(idb_req *req);
int idb_api_login(idb_req *req);
int idb_api_logout(idb_req *req);
int idb_api_me(idb_req *req);
int idb_api_auth_check(idb_req *req);

/* api_connections.c */
int idb_api_connections_list(idb_req *req);
int idb_api_connections_create(idb_req *req);
int idb_api_connections_get(idb_req *req);
int idb_api_connections_update(idb_req *req);
int idb_api_connections_delete(idb_req *req);
int idb_api_connections_test_mapping(idb_req *req);
int idb_api_attribute_presets(idb_req *req);
int idb_api_discover(idb_req *req);
/* user management (issue 6) */
/* api_users.c */
int idb_api_users_list(idb_req *req);
int idb_api_users_invite(idb_req *req);
int idb_api_users_get(idb_req *req);
int idb_api_users_patch(idb_req *req);
int idb_api_users_delete(idb_req *req);
int idb_api_users_deactivate(idb_req *req);
int idb_api_users_activate(idb_req *req);
int idb_api_users_unlock(idb_req *req);
int idb_api_users_restore(idb_req *req);
int idb_api_users_resend_invite(idb_req *req);
int idb_api_users_bulk(idb_req *req);
int idb_api_user_apikeys_list(idb_req *req);
int idb_api_user_apikeys_create(idb_req *req);
int idb_api_apikey_revoke(idb_req *req);
/* api_groups.c */
int idb_api_groups_list(idb_req *req);
int idb_api_groups_create(idb_req *req);
int idb_api_groups_get(idb_req *req);
int idb_api_groups_patch(idb_req *req);
int idb_api_groups_delete(idb_req *req);
int idb_api_groups_members(idb_req *req);
int idb_api_groups_member_add(idb_req *req);
int idb_api_groups_member_remove(idb_req *req);
/* api_audit.c */
int idb_api_audit_list(idb_req *req);
/* api_import.c (issue 7) */
int idb_api_import_template(idb_req *req);
int idb_api_import_preview(idb_req *req);
int idb_api_import_get(idb_req *req);
int idb_api_import_errors_csv(idb_req *req);
int idb_api_import_confirm(idb_req *req);
/* api_invite.c */
int idb_api_invite_page(idb_req *req);
int idb_api_invite_accept(idb_req *req);

/* Shared JSON helpers (api_auth.c): new references. */
json_t *idb_api_perms_json(uint32_t perms);
json_t *idb_api_groups_json(const char *groups);

#endif
