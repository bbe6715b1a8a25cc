/* SPDX-License-Identifier: AGPL-3.0-or-later */
/* The one route table: method, path pattern, handler, authentication, body
 * limit. */
#include "api.h"
#include "oidc.h"
#include "saml.h"
#include "roles.h"

#define KB(n) ((size_t)(n) * 1024)

const idb_route idb_routes[] = {
	{"GET", "/healthz", idb_api_healthz, IDB_AUTH_NONE, 0, KB(1)},
	{"GET", "/readyz", idb_api_readyz, IDB_AUTH_NONE, 0, KB(1)},
	{"GET", "/metrics", idb_api_metrics, IDB_AUTH_NONE, 0, KB(1)},
	{"GET", "/", idb_api_root, IDB_AUTH_NONE, 0, KB(1)},
	{"GET", "/login", idb_api_login_page, IDB_AUTH_NONE, 0, KB(1)},
	{"POST", "/login", idb_api_login, IDB_AUTH_NONE, 0, KB(16)},
	{"POST", "/logout", idb_api_logout, IDB_AUTH_NONE, 0, KB(16)},
	/* Forward auth: proxies may send the original method (Envoy) and path. */
	{"*", "/auth/check", idb_api_auth_check, IDB_AUTH_NONE, 0, KB(64)},
	{"*", "/auth/check/*", idb_api_auth_check, IDB_AUTH_NONE, 0, KB(64)},
	{"GET", "/api/v1/me", idb_api_me, IDB_AUTH_ANY, 0, KB(1)},
	/* SAML 2.0 SP (issue 3) */
	{"GET", "/sso/saml/{conn}/metadata", idb_saml_handle_metadata, IDB_AUTH_NONE, 0, KB(1)},
	{"GET", "/sso/saml/{conn}/login", idb_saml_handle_login, IDB_AUTH_NONE, 0, KB(1)},
	{"POST", "/sso/saml/{conn}/acs", idb_saml_handle_acs, IDB_AUTH_NONE, 0, KB(4096)},
	{"GET", "/sso/saml/{conn}/slo", idb_saml_handle_slo, IDB_AUTH_NONE, 0, KB(1)},
	{"POST", "/sso/saml/{conn}/slo", idb_saml_handle_slo, IDB_AUTH_NONE, 0, KB(256)},
	/* OpenID Connect RP (issue 4) */
	{"GET", "/sso/oidc/{conn}/login", idb_oidc_handle_login, IDB_AUTH_NONE, 0, KB(1)},
	{"GET", "/sso/oidc/{conn}/callback", idb_oidc_handle_callback, IDB_AUTH_NONE, 0, KB(1)},
	{"POST", "/sso/oidc/{conn}/backchannel-logout", idb_oidc_handle_backchannel_logout, IDB_AUTH_NONE, 0, KB(64)},
	/* IdP connections */
	{"GET", "/api/v1/connections", idb_api_connections_list, IDB_AUTH_PERM, IDB_PERM_SSO_MANAGE, KB(1)},
	{"POST", "/api/v1/connections", idb_api_connections_create, IDB_AUTH_PERM, IDB_PERM_SSO_MANAGE, KB(2048)},
	{"GET", "/api/v1/connections/{id}", idb_api_connections_get, IDB_AUTH_PERM, IDB_PERM_SSO_MANAGE, KB(1)},
	{"PATCH", "/api/v1/connections/{id}", idb_api_connections_update, IDB_AUTH_PERM, IDB_PERM_SSO_MANAGE, KB(2048)},
	{"DELETE", "/api/v1/connections/{id}", idb_api_connections_delete, IDB_AUTH_PERM, IDB_PERM_SSO_MANAGE, KB(1)},
	{"POST", "/api/v1/connections/{id}/test-mapping", idb_api_connections_test_mapping, IDB_AUTH_PERM,
	 IDB_PERM_SSO_MANAGE, KB(1024)},
	{"GET", "/api/v1/attribute-presets", idb_api_attribute_presets, IDB_AUTH_PERM, IDB_PERM_SSO_MANAGE, KB(1)},
	{"GET", "/sso/discover", idb_api_discover, IDB_AUTH_NONE, 0, KB(1)},

	/* user management (issue 6) */
#define UM IDB_PERM_USERS_MANAGE
#define GM (IDB_PERM_GROUPS_MANAGE | IDB_PERM_USERS_MANAGE) /* either grants */
	{"GET", "/invite/{token}", idb_api_invite_page, IDB_AUTH_NONE, 0, KB(1)},
	{"POST", "/invite/{token}", idb_api_invite_accept, IDB_AUTH_NONE, 0, KB(8)},
	{"GET", "/api/v1/users", idb_api_users_list, IDB_AUTH_PERM, UM, KB(1)},
	{"POST", "/api/v1/users/invite", idb_api_users_invite, IDB_AUTH_PERM, UM, KB(64)},
	{"POST", "/api/v1/users/bulk", idb_api_users_bulk, IDB_AUTH_PERM, UM, KB(128)},
	{"GET", "/api/v1/users/{id}", idb_api_users_get, IDB_AUTH_PERM, UM, KB(1)},
	{"PATCH", "/api/v1/users/{id}", idb_api_users_patch, IDB_AUTH_PERM, UM, KB(64)},
	{"DELETE", "/api/v1/users/{id}", idb_api_users_delete, IDB_AUTH_PERM, UM, KB(4)},
	{"POST", "/api/v1/users/{id}/deactivate", idb_api_users_deactivate, IDB_AUTH_PERM, UM, KB(1)},
	{"POST", "/api/v1/users/{id}/activate", idb_api_users_activate, IDB_AUTH_PERM, UM, KB(1)},
	{"POST", "/api/v1/users/{id}/unlock", idb_api_users_unlock, IDB_AUTH_PERM, UM, KB(1)},
	{"POST", "/api/v1/users/{id}/restore", idb_api_users_restore, IDB_AUTH_PERM, UM, KB(1)},
	{"POST", "/api/v1/users/{id}/resend-invite", idb_api_users_resend_invite, IDB_AUTH_PERM, UM, KB(1)},
	{"GET", "/api/v1/users/{id}/api-keys", idb_api_user_apikeys_list, IDB_AUTH_PERM, UM, KB(1)},
	{"POST", "/api/v1/users/{id}/api-keys", idb_api_user_apikeys_create, IDB_AUTH_PERM, UM, KB(8)},
	{"DELETE", "/api/v1/api-keys/{id}", idb_api_apikey_revoke, IDB_AUTH_PERM, UM, KB(1)},
	{"GET", "/api/v1/groups", idb_api_groups_list, IDB_AUTH_PERM, GM, KB(1)},
	{"POST", "/api/v1/groups", idb_api_groups_create, IDB_AUTH_PERM, GM, KB(16)},
	{"GET", "/api/v1/groups/{id}", idb_api_groups_get, IDB_AUTH_PERM, GM, KB(1)},
	{"PATCH", "/api/v1/groups/{id}", idb_api_groups_patch, IDB_AUTH_PERM, GM, KB(16)},
	{"DELETE", "/api/v1/groups/{id}", idb_api_groups_delete, IDB_AUTH_PERM, GM, KB(1)},
	{"GET", "/api/v1/groups/{id}/members", idb_api_groups_members, IDB_AUTH_PERM, GM, KB(1)},
	{"POST", "/api/v1/groups/{id}/members", idb_api_groups_member_add, IDB_AUTH_PERM, GM, KB(1)},
	{"DELETE", "/api/v1/groups/{id}/members/{user_id}", idb_api_groups_member_remove, IDB_AUTH_PERM, GM, KB(1)},
	{"GET", "/api/v1/audit", idb_api_audit_list, IDB_AUTH_PERM, IDB_PERM_AUDIT_VIEW, KB(1)},
	/* CSV import (issue 7): a 1,000-row file is far below 2 MiB */
	{"GET", "/api/v1/import/template", idb_api_import_template, IDB_AUTH_PERM, UM, KB(1)},
	{"POST", "/api/v1/import", idb_api_import_preview, IDB_AUTH_PERM, UM, KB(2048)},
	{"GET", "/api/v1/import/{id}", idb_api_import_get, IDB_AUTH_PERM, UM, KB(1)},
	{"GET", "/api/v1/import/{id}/errors.csv", idb_api_import_errors_csv, IDB_AUTH_PERM, UM, KB(1)},
	{"POST", "/api/v1/import/{id}/confirm", idb_api_import_confirm, IDB_AUTH_PERM, UM, KB(1)},
#undef UM
#undef GM
};

const size_t idb_routes_count = sizeof(idb_routes) / sizeof(idb_routes[0]);
