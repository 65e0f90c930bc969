/*
 * keys_parse.c — the one parser of the parts key request bodies share:
 * kty, crv, key_ops, attributes and tags, for create, update and import
 * alike, so that one body part gets one answer on every path.
 *
 * Where Azure Key Vault's service decides: a field that is null is a
 * field not given (so "tags": null leaves tags unchanged on update, and
 * {} clears them); attributes.exportable is a boolean, and true is refused
 * because no key leaves this vault's HSM.
 *
 * Must never: echo a field's value in an error (messages name fields).
 * Calls nothing in the other keys files.
 */
#include <string.h>
#include <strings.h>

#include "api/keys.h"

_Static_assert(VLT_CRV_P256 == 1 && VLT_CRV_P384 == 2 && VLT_CRV_P521 == 3 &&
        VLT_CRV_P256K == 4,
    "enum vlt_curve is the curve table's code (hsm/pkey.h)");

static const struct {
	const char *name;
	unsigned bit;
} key_ops_tab[] = {
	{ "encrypt", VLT_OP_ENCRYPT },
	{ "decrypt", VLT_OP_DECRYPT },
	{ "sign", VLT_OP_SIGN },
	{ "verify", VLT_OP_VERIFY },
	{ "wrapKey", VLT_OP_WRAP },
	{ "unwrapKey", VLT_OP_UNWRAP },
	{ "import", VLT_OP_IMPORT },
};
#define N_KEY_OPS (sizeof(key_ops_tab) / sizeof(key_ops_tab[0]))

json_t *
keys_ops_json(unsigned ops)
{
	json_t *a = json_array();
	size_t i;

	/* an element that cannot be added fails the whole array: a shorter
	 * key_ops list would be a wrong answer, not an error */
	for (i = 0; a != NULL && i < N_KEY_OPS; i++) {
		if ((ops & key_ops_tab[i].bit) &&
		    json_array_append_new(a,
		        json_string(key_ops_tab[i].name)) != 0) {
			json_decref(a);
			a = NULL;
		}
	}
	return a;
}

static int
op_bit(const char *s, unsigned *bit)
{
	size_t j;

	for (j = 0; j < N_KEY_OPS; j++) {
		if (strcasecmp(s, key_ops_tab[j].name) == 0) {
			*bit = key_ops_tab[j].bit;
			return 0;
		}
	}
	return VLT_ERR_BAD_PARAM;
}

int
keys_parse_ops(json_t *v, unsigned *ops, int *has, struct api_resp *r)
{
	unsigned bit;
	size_t i;
	json_t *e;

	*ops = 0;
	*has = 0;
	if (v == NULL || json_is_null(v))
		return 0;
	if (!json_is_array(v))
		return api_resp_bad(r,
		    "The field 'key_ops' must be an array of strings.");
	json_array_foreach(v, i, e) {
		const char *s = json_string_value(e);
		if (s == NULL)
			return api_resp_bad(r,
			    "The field 'key_ops' must be an array of "
			    "strings.");
		if (op_bit(s, &bit) != 0)
			return api_resp_bad(r,
			    "The field 'key_ops' holds an unknown key "
			    "operation.");
		*ops |= bit;
	}
	*has = 1;
	return 0;
}

int
keys_check_ops(enum vlt_kty kty, unsigned ops, struct api_resp *r)
{
	if (kty == VLT_KTY_EC &&
	    (ops & ~(unsigned)(VLT_OP_SIGN | VLT_OP_VERIFY)))
		return api_resp_bad(r,
		    "Unsupported key operation(s) for an EC key: only "
		    "sign and verify are possible.");
	return 0;
}

/* attrs.<field> (nbf, exp) as a Unix time; null: there, and 0 */
static int
parse_time(json_t *attrs, const char *field, int *has, int64_t *out,
    struct api_resp *r)
{
	json_t *v = json_object_get(attrs, field);

	*has = 0;
	*out = 0;
	if (v == NULL)
		return 0;
	*has = 1;
	if (json_is_null(v))
		return 0;
	if (!json_is_number(v) || json_number_value(v) < 0 ||
	    json_number_value(v) > 253402300799.0) {
		api_resp_error(r, 400, "BadParameter",
		    "The field 'attributes.%s' must be a Unix time in "
		    "seconds.",
		    field);
		return VLT_ERR_BAD_PARAM;
	}
	*out = (int64_t)json_number_value(v);
	return 0;
}

int
keys_parse_attrs(json_t *body, struct keys_attrs *a, struct api_resp *r)
{
	json_t *attrs = json_object_get(body, "attributes");
	json_t *v;
	int rc;

	memset(a, 0, sizeof(*a));
	if (attrs == NULL || json_is_null(attrs))
		return 0;
	if (!json_is_object(attrs))
		return api_resp_bad(r,
		    "The field 'attributes' must be an object.");
	v = json_object_get(attrs, "enabled");
	if (v && !json_is_null(v)) {
		if (!json_is_boolean(v))
			return api_resp_bad(r,
			    "The field 'attributes.enabled' must be a "
			    "boolean.");
		a->has_enabled = 1;
		a->enabled = json_is_true(v);
	}
	v = json_object_get(attrs, "exportable");
	if (v && !json_is_null(v) && !json_is_boolean(v))
		return api_resp_bad(r,
		    "The field 'attributes.exportable' must be a "
		    "boolean.");
	if (json_is_true(v))
		return api_resp_bad(r,
		    "Exportable keys are not supported: private keys "
		    "never leave this vault's HSM.");
	if ((rc = parse_time(attrs, "nbf", &a->has_nbf, &a->nbf, r)) != 0 ||
	    (rc = parse_time(attrs, "exp", &a->has_exp, &a->exp, r)) != 0)
		return rc;
	return 0;
}

int
keys_parse_tags(json_t *body, char **tags, struct api_resp *r)
{
	json_t *t = json_object_get(body, "tags");
	const char *k;
	json_t *v;

	*tags = NULL;
	if (t == NULL || json_is_null(t))
		return 0;
	if (!json_is_object(t))
		return api_resp_bad(r,
		    "The field 'tags' must be an object of strings.");
	if (json_object_size(t) > KEYS_TAGS_MAX) {
		api_resp_error(r, 400, "BadParameter",
		    "At most %d tags are allowed.", KEYS_TAGS_MAX);
		return VLT_ERR_BAD_PARAM;
	}
	json_object_foreach(t, k, v) {
		if (!json_is_string(v))
			return api_resp_bad(r, "Tag values must be strings.");
		if (strlen(k) > KEYS_TAG_NAME_MAX ||
		    json_string_length(v) > KEYS_TAG_VALUE_MAX) {
			api_resp_error(r, 400, "BadParameter",
			    "Tag names are at most %d characters and values "
			    "at most %d.",
			    KEYS_TAG_NAME_MAX, KEYS_TAG_VALUE_MAX);
			return VLT_ERR_BAD_PARAM;
		}
	}
	if ((*tags = json_dumps(t, JSON_COMPACT | JSON_SORT_KEYS)) == NULL) {
		api_resp_vault_error(r, VLT_ERR_NO_MEMORY, NULL, NULL);
		return VLT_ERR_NO_MEMORY;
	}
	return 0;
}

int
keys_parse_kty(json_t *obj, const char *label, enum vlt_kty *kty, int *hsm,
    struct api_resp *r)
{
	const char *s;
	int rc;

	if ((rc = api_field_string(obj, "kty", 1, &s, r)) != 0)
		return rc;
	if (strcmp(s, "RSA") == 0 || strcmp(s, "RSA-HSM") == 0)
		*kty = VLT_KTY_RSA;
	else if (strcmp(s, "EC") == 0 || strcmp(s, "EC-HSM") == 0)
		*kty = VLT_KTY_EC;
	else {
		api_resp_error(r, 400, "BadParameter",
		    "The field '%s' must be "
		    "one of RSA, RSA-HSM, EC, EC-HSM.",
		    label);
		return VLT_ERR_BAD_PARAM;
	}
	*hsm = strstr(s, "-HSM") != NULL;
	return 0;
}

int
keys_parse_crv(json_t *obj, const char *label, int required,
    const struct hsm_curve_info **c, struct api_resp *r)
{
	const char *s;
	int rc;

	*c = NULL;
	if ((rc = api_field_string(obj, "crv", required, &s, r)) != 0)
		return rc;
	if (s == NULL)
		return 0;
	if ((*c = hsm_curve_by_name(s)) == NULL) {
		api_resp_error(r, 400, "BadParameter",
		    "The field '%s' must be "
		    "P-256, P-256K, P-384 or P-521.",
		    label);
		return VLT_ERR_BAD_PARAM;
	}
	return 0;
}
