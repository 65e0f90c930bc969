/*
 * vault/rotation.c — key rotation: a new version like the latest, the
 * rotation policy of a key (and the text form its actions are stored
 * in), and the sweep that rotates every key whose Rotate action is due,
 * with an audit record for each.
 *
 * The actions' text form, one line per action: "ACTION TRIGGER SECS
 * DURATION\n" (enum values and seconds in decimal, the duration as the
 * caller gave it, e.g. "P90D"). The store keeps it as an opaque string.
 *
 * Must never: rotate a key that is not live; let a failed audit record
 * pass unreported (the rotation stands, the sweep says so).
 */
#include "vault/vault_int.h"

#include <stdlib.h>
#include <string.h>

#include "hsm/base.h"

/* ---- the actions' text form --------------------------------------------- */

static int
actions_format(const struct vlt_rotation_policy *p, struct store_rotation *rec)
{
	buf_t *b;
	size_t i;
	int r = 0;

	if ((b = buf_new(sizeof(rec->actions) - 1)) == NULL)
		return VLT_ERR_NO_MEMORY;
	for (i = 0; r == 0 && i < p->n && i < VLT_ROT_ACTIONS_MAX; i++)
		r = buf_putf(b, "%d %d %lld %s\n", (int)p->a[i].action,
		    (int)p->a[i].trigger, (long long)p->a[i].secs,
		    p->a[i].duration);
	if (r == 0)
		r = str_fmt(rec->actions, sizeof(rec->actions), "%s",
		    buf_str(b));
	buf_free(b);
	return r == 0 ? 0 : VLT_ERR_INTERNAL;
}

/* One "ACTION TRIGGER SECS DURATION" line into a; 0 or VLT_ERR_INTERNAL. */
static int
action_parse(char *line, struct vlt_rotation_action *a)
{
	char *f[4], *save = NULL;
	int64_t act, trig, secs;
	size_t i;

	for (i = 0; i < 4; i++)
		if ((f[i] = strtok_r(i == 0 ? line : NULL, " ", &save)) == NULL)
			return VLT_ERR_INTERNAL;
	if (strtok_r(NULL, " ", &save) != NULL ||
	    parse_i64(f[0], 0, VLT_ROT_NOTIFY, &act) != 0 ||
	    parse_i64(f[1], 0, VLT_ROT_BEFORE_EXPIRY, &trig) != 0 ||
	    parse_i64(f[2], INT64_MIN, INT64_MAX, &secs) != 0 ||
	    str_fmt(a->duration, sizeof(a->duration), "%s", f[3]) != 0)
		return VLT_ERR_INTERNAL;
	a->action = (enum vlt_rot_action)act;
	a->trigger = (enum vlt_rot_trigger)trig;
	a->secs = secs;
	return 0;
}

/* The stored record as a policy; a malformed line ends the actions. */
static void
actions_parse(const struct store_rotation *rec, struct vlt_rotation_policy *p)
{
	char text[STORE_ROT_TEXT_MAX], *line, *save = NULL;

	memset(p, 0, sizeof(*p));
	p->expiry_secs = rec->expiry_secs;
	memcpy(p->expiry, rec->expiry, sizeof(p->expiry));
	p->expiry[sizeof(p->expiry) - 1] = '\0';
	p->created = rec->created;
	p->updated = rec->updated;
	memcpy(text, rec->actions, sizeof(text));
	text[sizeof(text) - 1] = '\0';
	for (line = strtok_r(text, "\n", &save);
	     line != NULL && p->n < VLT_ROT_ACTIONS_MAX;
	     line = strtok_r(NULL, "\n", &save)) {
		if (action_parse(line, &p->a[p->n]) != 0)
			break;
		p->n++;
	}
}

/* ---- policies ------------------------------------------------------------ */

static int
policy_read(vault_t *v, const char *name, struct vlt_rotation_policy *out)
{
	struct store_rotation rec;
	int r;

	if ((r = store_rotation_get(v->store, name, &rec)) != 0)
		return r;
	actions_parse(&rec, out);
	return 0;
}

int
vault_key_rotate(vault_t *v, const char *name, struct vlt_key_info *out)
{
	struct vlt_rotation_policy pol;
	struct vlt_create_req req;
	struct vlt_key_info cur;
	int r;

	if (out != NULL)
		memset(out, 0, sizeof(*out));
	memset(&req, 0, sizeof(req));
	if (v == NULL || vault_name_check(name) != 0)
		return VLT_ERR_BAD_PARAM;
	if ((r = store_version_get(v->store, name, NULL, 0, &cur, NULL,
	         NULL)) != 0)
		return r;
	req.kty = cur.kty;
	req.hsm = cur.hsm;
	req.key_size = cur.key_size;
	req.crv = cur.crv;
	req.key_ops = cur.key_ops;
	req.enabled = 1;
	req.tags = cur.tags;
	r = policy_read(v, name, &pol);
	if (r == 0 && pol.expiry_secs > 0)
		req.exp_after = pol.expiry_secs;
	else if (r != 0 && r != VLT_ERR_NOT_FOUND)
		goto out;
	r = vault_key_create(v, name, &req, out);
out:
	vlt_key_info_clear(&cur);
	return r;
}

int
vault_rotation_policy_get(vault_t *v, const char *name,
    struct vlt_rotation_policy *out)
{
	struct vlt_key_info k;
	int r;

	if (out != NULL)
		memset(out, 0, sizeof(*out));
	if (v == NULL || out == NULL || vault_name_check(name) != 0)
		return VLT_ERR_BAD_PARAM;
	if ((r = store_version_get(v->store, name, NULL, 0, &k, NULL, NULL)) !=
	    0)
		return r;
	vlt_key_info_clear(&k);
	r = policy_read(v, name, out);
	return r == VLT_ERR_NOT_FOUND ? 0 : r;
}

int
vault_rotation_policy_set(vault_t *v, const char *name,
    const struct vlt_rotation_policy *p, struct vlt_rotation_policy *out)
{
	struct store_rotation rec;
	size_t i;
	int r;

	if (out != NULL)
		memset(out, 0, sizeof(*out));
	if (v == NULL || p == NULL || vault_name_check(name) != 0 ||
	    p->n > VLT_ROT_ACTIONS_MAX || p->expiry_secs < 0)
		return VLT_ERR_BAD_PARAM;
	for (i = 0; i < p->n; i++)
		if (p->a[i].secs <= 0 || strchr(p->a[i].duration, ' ') ||
		    strchr(p->a[i].duration, '\n') ||
		    p->a[i].duration[0] == '\0')
			return VLT_ERR_BAD_PARAM;
	memset(&rec, 0, sizeof(rec));
	rec.expiry_secs = p->expiry_secs;
	if (str_fmt(rec.expiry, sizeof(rec.expiry), "%s", p->expiry) != 0)
		return VLT_ERR_BAD_PARAM;
	if ((r = actions_format(p, &rec)) != 0 ||
	    (r = store_rotation_put(v->store, name, &rec, vault_now(v))) != 0)
		return r;
	return out != NULL ? vault_rotation_policy_get(v, name, out) : 0;
}

/* ---- the sweep ------------------------------------------------------------ */

/* The Rotate action of p that is due for key k at now, or NULL. */
static const struct vlt_rotation_action *
rotation_due_action(const struct vlt_rotation_policy *p,
    const struct vlt_key_info *k, int64_t now)
{
	size_t i;

	for (i = 0; i < p->n; i++) {
		const struct vlt_rotation_action *a = &p->a[i];

		if (a->action != VLT_ROT_ROTATE)
			continue;
		if (a->trigger == VLT_ROT_AFTER_CREATE &&
		    now >= k->attrs.created + a->secs)
			return a;
		if (a->trigger == VLT_ROT_BEFORE_EXPIRY && k->attrs.exp != 0 &&
		    now >= k->attrs.exp - a->secs)
			return a;
	}
	return NULL;
}

/* The audit record of one automatic rotation (r: its result). */
static int
rotation_audit(vault_t *v, const char *name, const struct vlt_key_info *nk,
    const struct vlt_rotation_action *a, int64_t now, int r)
{
	const char *url = vault_config(v, "vault_url");
	char key_id[VLT_AUDIT_TEXT_MAX + 1];
	struct vlt_audit_event ev;

	if (str_fmt(key_id, sizeof(key_id), "%s/keys/%s%s%s",
	        url != NULL ? url : "", name, r == 0 ? "/" : "",
	        r == 0 ? nk->version : "") != 0)
		return VLT_ERR_INTERNAL;
	memset(&ev, 0, sizeof(ev));
	ev.time_ms = now * 1000;
	ev.caller_oid = "p11vault";
	ev.caller_app_id = "rotation-policy";
	ev.operation = "RotateKey";
	ev.trigger = a->trigger == VLT_ROT_AFTER_CREATE ? "timeAfterCreate" :
	                                                  "timeBeforeExpiry";
	ev.key_id = key_id;
	ev.http_status = r == 0 ? 200 : 500;
	return vault_audit_event(v, &ev, 1);
}

/* Rotates name when its policy p is due: 1 rotated, 0 not due, or an
 * error (*audit_err set when the audit record failed). */
static int
rotate_if_due(vault_t *v, const char *name, const struct vlt_rotation_policy *p,
    int *audit_err)
{
	const struct vlt_rotation_action *a;
	struct vlt_key_info k, nk;
	int64_t now = vault_now(v);
	int r;

	memset(&nk, 0, sizeof(nk));
	if (store_version_get(v->store, name, NULL, 0, &k, NULL, NULL) != 0)
		return 0; /* deleted meanwhile */
	a = rotation_due_action(p, &k, now);
	vlt_key_info_clear(&k);
	if (a == NULL)
		return 0;
	r = vault_key_rotate(v, name, &nk);
	if (rotation_audit(v, name, &nk, a, now, r) != 0)
		*audit_err = 1; /* the rotation stands; say so */
	vlt_key_info_clear(&nk);
	return r == 0 ? 1 : r;
}

static int rotation_due_one(vault_t *v);

int
vault_rotation_due(vault_t *v)
{
	if (v == NULL)
		return VLT_ERR_BAD_PARAM;
	return children_sweep(v, rotation_due_one);
}

/* The due rotations of one vault. */
static int
rotation_due_one(vault_t *v)
{
	struct store_rotation *recs = NULL;
	struct vlt_rotation_policy pol;
	size_t n = 0, i;
	int r, count = 0, err = 0, audit_err = 0;

	if (v == NULL)
		return VLT_ERR_BAD_PARAM;
	if ((r = store_rotation_list(v->store, &recs, &n)) != 0)
		return r;
	for (i = 0; i < n; i++) {
		actions_parse(&recs[i], &pol);
		r = rotate_if_due(v, recs[i].name, &pol, &audit_err);
		if (audit_err && err == 0)
			err = VLT_ERR_IO;
		if (r > 0)
			count++;
		else if (r < 0 && err == 0)
			err = r;
	}
	free(recs);
	return err != 0 ? err : count;
}
