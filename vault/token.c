/*
 * vault/token.c — what the vault asks of its token beyond keys: the seal
 * state and unsealing (which triggers the blob upgrade), rekeying an
 * offline vault, the JWT signing key, health, and the figures of the
 * token and the version cache for metrics.
 *
 * Must never: see a PIN or an unseal secret (the token process holds
 * them); log a share.
 */
#include "vault/vault_int.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>


int
vault_jwt_sign(vault_t *v, const uint8_t *data, size_t len, uint8_t sig[64])
{
	if (v == NULL || data == NULL || sig == NULL)
		return VLT_ERR_BAD_PARAM;
	return map_hsm(hsm_jwt_sign(v->hsm, data, len, sig));
}

int
vault_jwt_public(vault_t *v, uint8_t **spki, size_t *len)
{
	if (v == NULL || spki == NULL || len == NULL)
		return VLT_ERR_BAD_PARAM;
	return map_hsm(hsm_jwt_public(v->hsm, spki, len));
}

static void
seal_status_of(const struct hsm_seal_status *h, struct vlt_seal_status *st)
{
	st->sealed = h->sealed;
	st->threshold = h->threshold;
	st->shares = h->shares;
	st->progress = h->progress;
	st->plaintext_pins = h->plaintext_pins;
	st->result = h->result;
}

int
vault_seal_status(vault_t *v, struct vlt_seal_status *st)
{
	struct hsm_seal_status h;
	int r;

	if (v == NULL || st == NULL)
		return VLT_ERR_BAD_PARAM;
	memset(st, 0, sizeof(*st));
	if ((r = hsm_seal_status(v->hsm, &h)) != 0)
		return map_hsm(r);
	seal_status_of(&h, st);
	return 0;
}

int
vault_unseal(vault_t *v, const char *share, struct vlt_seal_status *st)
{
	struct hsm_seal_status h;
	int r, was_sealed;

	if (v == NULL || st == NULL)
		return VLT_ERR_BAD_PARAM;
	memset(st, 0, sizeof(*st));
	if ((r = hsm_seal_status(v->hsm, &h)) != 0)
		return map_hsm(r);
	was_sealed = h.sealed;
	if ((r = hsm_unseal_share(v->hsm, share, &h)) != 0)
		return r == HSM_ERR_ARGS ? VLT_ERR_CONFLICT : map_hsm(r);
	seal_status_of(&h, st);
	if (was_sealed && !h.sealed)
		return upgrade_blobs(v, v->data_dir);
	return 0;
}

int
vault_rekey(const char *data_dir, unsigned key_shares, unsigned key_threshold,
    const char *auto_unseal, const char *old_shares, const char *module_allow,
    char **shares_out)
{
	char path[PATH_MAX], dir[PATH_MAX], hsm_dir[PATH_MAX], shconf[PATH_MAX];
	struct vlt_conf *conf = NULL;
	struct hsm_init hi;
	int r;

	*shares_out = NULL;
	if (data_dir == NULL || realpath(data_dir, dir) == NULL)
		return VLT_ERR_NOT_FOUND;
	if ((r = fs_join(path, sizeof(path), dir, "p11vault.conf")) != 0 ||
	    (r = conf_read(path, &conf)) != 0)
		return r;
	/* a copy of a data directory rekeys its own token, never the
	 * original's */
	if ((r = fs_join(hsm_dir, sizeof(hsm_dir), dir, "hsm")) != 0 ||
	    (r = vlt_softhsm_resolve(dir, conf_get(conf, "softhsm_conf"),
	         shconf, sizeof(shconf), NULL, 0)) != 0)
		goto out;
	memset(&hi, 0, sizeof(hi));
	hi.module_path = conf_get(conf, "module");
	hi.token_label = conf_get(conf, "token_label");
	hi.module_allow = module_allow;
	hi.hsm_dir = hsm_dir;
	hi.softhsm_conf = shconf[0] != '\0' ? shconf : NULL;
	hi.shares = key_shares;
	hi.threshold = key_threshold;
	hi.auto_method = auto_unseal != NULL ? auto_unseal : "";
	r = map_hsm(hsm_rekey(&hi, old_shares, shares_out));
out:
	conf_free(conf);
	return r;
}

int
vault_health(vault_t *v)
{
	int r;

	if (v == NULL)
		return VLT_ERR_BAD_PARAM;
	if ((r = hsm_health(v->hsm)) != 0)
		return map_hsm(r);
	if ((r = store_ping(v->store)) != 0)
		return r;
	/* both are tried each time: each ends its own episode */
	r = store_probe(v->store);
	return vault_storage_ready(v) != 0 ? VLT_ERR_STORAGE : r;
}

int
vault_version_cache_stats(vault_t *v, uint64_t *hits, uint64_t *misses)
{
	if (v == NULL || v->store == NULL)
		return VLT_ERR_BAD_PARAM;
	store_vcache_stats(v->store, hits, misses);
	return 0;
}

/* Session-pool and handle-cache figures, for GET /metrics. */
int
vault_hsm_stats(vault_t *v, uint64_t *cache_hits, uint64_t *cache_misses,
    size_t *sessions_busy, size_t *sessions_total)
{
	if (v == NULL || v->hsm == NULL)
		return VLT_ERR_BAD_PARAM;
	hsm_stats(v->hsm, cache_hits, cache_misses, sessions_busy,
	    sessions_total);
	return 0;
}

int
vault_token_process(vault_t *v, int *up, uint64_t *restarts)
{
	long pid;

	if (v == NULL || v->hsm == NULL)
		return VLT_ERR_BAD_PARAM;
	hsm_process(v->hsm, &pid, restarts);
	*up = pid > 0;
	return 0;
}
