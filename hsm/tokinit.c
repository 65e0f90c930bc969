/*
 * hsm/tokinit.c — the ceremonies on a token that is not open: its
 * initialisation (tok_token_init) and the change of its PINs
 * (tok_change_pins), each with its own load of the module.
 *
 * Owns: the making of the domain key (as SO: CKA_TRUSTED is an SO
 * attribute; its template is p11.c's hsm_domain_template) and of the JWT
 * key pair; the token of a node that is yet to join (node.c's transport
 * pair instead of the domain's keys).
 * Must never: keep a PIN past the call; make a domain key that can leave
 * the token in plaintext; touch a token other than the one labelled.
 */
#include <string.h>


#include "hsm/hsm_int.h"


static int
make_domain_key(CK_FUNCTION_LIST *f, CK_SESSION_HANDLE s)
{
	CK_ATTRIBUTE t[HSM_DOMAIN_TEMPLATE_N + 1];
	CK_ULONG vlen = 32;
	uint8_t id[HSM_DOMAIN_ID_LEN];
	size_t n = hsm_domain_template(t, 1, id);
	CK_MECHANISM m = { CKM_AES_KEY_GEN, NULL, 0 };
	CK_OBJECT_HANDLE k;

	t[n++] = (CK_ATTRIBUTE){ CKA_VALUE_LEN, &vlen, sizeof(vlen) };
	return hsm_init_rv(f->C_GenerateKey(s, &m, t, (CK_ULONG)n, &k));
}

static int
make_jwt_key(CK_FUNCTION_LIST *f, CK_SESSION_HANDLE s)
{
	return hsm_sign_pair_make(f, s, HSM_JWT_LABEL);
}

/* The token's keys, in R/W session s of a freshly initialised token:
 * as SO the user PIN and the domain key (CKA_TRUSTED can only be set by
 * the SO, on a public object), then as user the JWT pair, the bind key
 * and the seal key. */
static int
init_objects(CK_FUNCTION_LIST *f, CK_SESSION_HANDLE s, const char *so_pin,
    const char *user_pin)
{
	CK_OBJECT_HANDLE k;
	int rc;

	if ((rc = hsm_init_rv(f->C_Login(s, CKU_SO, (CK_UTF8CHAR *)so_pin,
	         strlen(so_pin)))) != 0)
		return rc;
	if ((rc = hsm_init_rv(f->C_InitPIN(s, (CK_UTF8CHAR *)user_pin,
	         strlen(user_pin)))) == 0)
		rc = make_domain_key(f, s);
	(void)f->C_Logout(s);
	if (rc != 0)
		return rc;
	if ((rc = hsm_init_rv(f->C_Login(s, CKU_USER, (CK_UTF8CHAR *)user_pin,
	         strlen(user_pin)))) != 0)
		return rc;
	if ((rc = make_jwt_key(f, s)) == 0 &&
	    (rc = hsm_init_rv(hsm_role_key_make(f, s, HSM_BIND_LABEL, &k))) ==
	        0)
		rc = hsm_init_rv(hsm_role_key_make(f, s, HSM_SEAL_LABEL, &k));
	(void)f->C_Logout(s);
	return rc;
}

int
tok_token_init(const char *module_path, const char *token_label,
    const char *so_pin, const char *user_pin)
{
	return tok_token_init_kind(module_path, token_label, so_pin, user_pin,
	    0);
}

int
tok_token_init_kind(const char *module_path, const char *token_label,
    const char *so_pin, const char *user_pin, int node)
{
	CK_FUNCTION_LIST *f = NULL;
	CK_SLOT_ID slot = 0;
	CK_SESSION_HANDLE s = CK_INVALID_HANDLE;
	unsigned char label[32];
	void *dl = NULL;
	int owns = 0, rc;

	if (module_path == NULL || token_label == NULL || so_pin == NULL ||
	    user_pin == NULL || *token_label == '\0' ||
	    strlen(token_label) > 32 || *so_pin == '\0' || *user_pin == '\0')
		return HSM_ERR_ARGS;
	if ((rc = hsm_load(module_path, &dl, &f, &owns)) != 0)
		return rc;
	if (hsm_slot_find(f, token_label, &slot) == 0) {
		rc = HSM_ERR_EXISTS;
		goto out;
	}
	if ((rc = hsm_slot_find(f, NULL, &slot)) != 0)
		goto out;
	hsm_pad_label(token_label, label);
	if ((rc = hsm_init_rv(f->C_InitToken(slot, (CK_UTF8CHAR *)so_pin,
	         strlen(so_pin), label))) != 0)
		goto out;
	/* some modules (SoftHSMv2) move an initialised token to a new slot */
	if ((rc = hsm_slot_find(f, token_label, &slot)) != 0)
		goto out;
	if ((rc = hsm_init_rv(f->C_OpenSession(slot,
	         CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &s))) != 0)
		goto out;
	rc = node ? tok_node_objects(f, s, so_pin, user_pin) :
	            init_objects(f, s, so_pin, user_pin);
out:
	if (s != CK_INVALID_HANDLE)
		(void)f->C_CloseSession(s);
	hsm_unload(dl, f, owns);
	return rc;
}

/* One PIN, old to new, in R/W session s. A PIN that is already new
 * (the old one refused, the new one taken) counts as changed. */
static int
change_pin(CK_FUNCTION_LIST *f, CK_SESSION_HANDLE s, CK_USER_TYPE who,
    const char *old, const char *new_pin)
{
	CK_RV rv;

	rv = f->C_Login(s, who, (CK_UTF8CHAR *)old, strlen(old));
	if (rv == CKR_PIN_INCORRECT) {
		rv = f->C_Login(s, who, (CK_UTF8CHAR *)new_pin,
		    strlen(new_pin));
		if (rv == CKR_OK)
			(void)f->C_Logout(s);
		return rv == CKR_OK ? 0 : HSM_ERR_ARGS;
	}
	if (rv != CKR_OK)
		return hsm_init_rv(rv);
	rv = f->C_SetPIN(s, (CK_UTF8CHAR *)old, strlen(old),
	    (CK_UTF8CHAR *)new_pin, strlen(new_pin));
	(void)f->C_Logout(s);
	return hsm_init_rv(rv);
}

int
tok_change_pins(const char *module_path, const char *token_label,
    const char *old_user, const char *new_user, const char *old_so,
    const char *new_so)
{
	CK_FUNCTION_LIST *f = NULL;
	CK_SESSION_HANDLE s = CK_INVALID_HANDLE;
	CK_SLOT_ID slot;
	void *dl = NULL;
	int owns = 0, rc;

	if ((rc = hsm_load(module_path, &dl, &f, &owns)) != 0)
		return rc;
	if ((rc = hsm_slot_find(f, token_label, &slot)) != 0)
		goto out;
	if ((rc = hsm_init_rv(f->C_OpenSession(slot,
	         CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &s))) != 0)
		goto out;
	if ((rc = change_pin(f, s, CKU_SO, old_so, new_so)) != 0)
		goto out;
	rc = change_pin(f, s, CKU_USER, old_user, new_user);
out:
	if (s != CK_INVALID_HANDLE)
		(void)f->C_CloseSession(s);
	hsm_unload(dl, f, owns);
	return rc;
}
