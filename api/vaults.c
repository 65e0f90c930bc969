/*
 * vaults.c — the appliance's other vaults as the API sees them: their
 * access policies loaded into the one policy_t (each under its vault's
 * name) at start and when a vault comes back, dropped when it goes; and
 * the parts of a vault's URL (the port every vault shares).
 *
 * Must never: grant in one vault what another vault's policy says.
 */
#include <stdlib.h>
#include <string.h>

#include "api/api.h"

int
api_vault_policies_load(struct api_ctx *c, vault_t *v)
{
	struct vlt_access_policy *ap = NULL;
	const char *scope = vault_child_name(v);
	size_t m = 0, i;
	int rc;

	if (scope == NULL)
		return VLT_ERR_BAD_PARAM; /* the default vault: load_policy */
	if ((rc = vault_access_list(v, &ap, &m)) != 0)
		return rc;
	for (i = 0; i < m && rc == 0; i++)
		if (policy_access_set_in(c->policy, scope, ap[i].object_id,
		        ap[i].perms) != 0)
			rc = VLT_ERR_INTERNAL;
	free(ap);
	return rc;
}

int
api_vaults_load(struct api_ctx *c)
{
	struct vlt_vault *items = NULL;
	vault_t *v;
	size_t n = 0, i;
	int rc;

	if ((rc = vault_child_list(c->vault, 0, &items, &n)) != 0)
		return rc;
	for (i = 0; i < n && rc == 0; i++) {
		if (vault_child_acquire(c->vault, items[i].name, &v) != 0)
			continue; /* deleted meanwhile */
		rc = api_vault_policies_load(c, v);
		vault_child_release(v);
	}
	vlt_vault_free_array(items, n);
	return rc;
}

int
api_vaults_context(struct api_ctx *c)
{
	const char *u = c->vault_url, *host, *colon, *end;

	c->vault_domain = vault_config(c->vault, "vault_domain");
	c->vault_name = vault_config(c->vault, "vault_name");
	if (api_arm_subscription_id(c, c->subscription_id) != 0)
		return VLT_ERR_BAD_PARAM;
	c->vault_port[0] = '\0';
	host = strstr(u, "://");
	host = host != NULL ? host + 3 : u;
	end = host + strcspn(host, "/?#");
	colon = end;
	while (colon > host && colon[-1] >= '0' && colon[-1] <= '9')
		colon--;
	if (colon > host && colon < end && colon[-1] == ':' &&
	    (size_t)(end - colon) + 2 <= sizeof(c->vault_port)) {
		c->vault_port[0] = ':';
		memcpy(c->vault_port + 1, colon, (size_t)(end - colon));
		c->vault_port[end - colon + 1] = '\0';
	}
	return 0;
}

int
api_principal_forget(struct api_ctx *c, const char *oid)
{
	struct vlt_vault *items = NULL;
	vault_t *v;
	size_t n = 0, i;
	int rc = vault_principal_delete(c->vault, oid);

	if (rc != 0 && rc != VLT_ERR_NOT_FOUND)
		return rc;
	if (policy_access_remove(c->policy, oid) != POLICY_OK ||
	    policy_principal_remove(c->policy, oid) != POLICY_OK)
		return VLT_ERR_INTERNAL;
	/* its grants in the other vaults: gone from their stores too, so
	 * that no later principal could inherit them */
	if ((rc = vault_child_list(c->vault, 0, &items, &n)) != 0)
		return rc;
	for (i = 0; i < n && rc == 0; i++) {
		if (vault_child_acquire(c->vault, items[i].name, &v) != 0)
			continue; /* deleted meanwhile */
		rc = vault_access_delete(v, oid);
		if (rc == VLT_ERR_NOT_FOUND)
			rc = 0;
		if (rc == 0 &&
		    policy_access_remove_in(c->policy, items[i].name, oid) !=
		        POLICY_OK)
			rc = VLT_ERR_INTERNAL;
		vault_child_release(v);
	}
	vlt_vault_free_array(items, n);
	return rc;
}
