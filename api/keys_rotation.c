/*
 * keys_rotation.c — GET and PUT /keys/{name}/rotationpolicy: the rotation
 * policy's JSON, with Azure's rules (expiryTime at least 28 days; each
 * trigger at least 7 days; at most one Rotate action; Notify only before
 * expiry; timeAfterCreate at least 7 days shorter than expiryTime).
 * vault/ keeps the policy and rotates on schedule.
 *
 * Must never: accept a policy that breaks one of those rules (the vault
 * would rotate on a schedule Azure refuses).
 */
#include <string.h>
#include <strings.h>

#include "api/keys.h"
#include "hsm/base.h"

#define DAY 86400LL
#define EXPIRY_MIN (28 * DAY) /* expiryTime */
#define TRIGGER_MIN (7 * DAY) /* each trigger, and the gap to expiry */

static json_t *
action_json(const char *trigger, const char *duration, const char *type)
{
	return json_pack("{s:{s:s}, s:{s:s}}", "trigger", trigger, duration,
	    "action", "type", type);
}

static json_t *
policy_json(struct api_req *q, const char *name,
    const struct vlt_rotation_policy *p)
{
	json_t *acts = json_array(), *attrs = json_object();
	char id[512];
	size_t i;

	if (keys_kid(q, name, "rotationpolicy", id, sizeof(id)) != 0) {
		json_decref(acts);
		json_decref(attrs);
		return NULL;
	}
	if (p->created == 0) /* Azure's answer for a key without one */
		json_array_append_new(acts,
		    action_json("timeBeforeExpiry", "P30D", "Notify"));
	for (i = 0; i < p->n; i++)
		json_array_append_new(acts,
		    action_json(p->a[i].trigger == VLT_ROT_AFTER_CREATE ?
		            "timeAfterCreate" :
		            "timeBeforeExpiry",
		        p->a[i].duration,
		        p->a[i].action == VLT_ROT_ROTATE ? "Rotate" :
		                                           "Notify"));
	if (p->expiry[0] != '\0')
		json_object_set_new(attrs, "expiryTime",
		    json_string(p->expiry));
	if (p->created != 0) {
		json_object_set_new(attrs, "created", json_integer(p->created));
		json_object_set_new(attrs, "updated", json_integer(p->updated));
	}
	return json_pack("{s:s, s:o, s:o}", "id", id, "lifetimeActions", acts,
	    "attributes", attrs);
}

static void
send_policy(struct api_req *q, struct api_resp *r, const char *name,
    const struct vlt_rotation_policy *p)
{
	json_t *j = policy_json(q, name, p);

	if (j == NULL)
		api_resp_vault_error(r, VLT_ERR_INTERNAL, name, NULL);
	else
		api_resp_set(r, 200, j);
}

void
keys_rotation_get(struct api_req *q, struct api_resp *r,
    const struct key_target *t)
{
	struct vlt_rotation_policy p;
	int rc;

	rc = vault_rotation_policy_get(q->vault, t->name, &p);
	if (rc != 0) {
		api_resp_vault_error(r, rc, t->name, NULL);
		return;
	}
	send_policy(q, r, t->name, &p);
}

/* attributes.expiryTime */
static int
parse_expiry(json_t *body, struct vlt_rotation_policy *p, struct api_resp *r)
{
	json_t *attrs = json_object_get(body, "attributes"), *v;
	const char *dur;
	int64_t secs;

	if (attrs == NULL || json_is_null(attrs))
		return 0;
	if (!json_is_object(attrs))
		return api_resp_bad(r,
		    "The field 'attributes' must be an object.");
	v = json_object_get(attrs, "expiryTime");
	if (v == NULL || json_is_null(v))
		return 0;
	dur = json_string_value(v);
	if (api_duration_secs(dur, &secs) != 0)
		return api_resp_bad(r,
		    "The field 'attributes.expiryTime' must be an ISO "
		    "8601 duration.");
	if (secs < EXPIRY_MIN)
		return api_resp_bad(r,
		    "The rotation policy's expiryTime must be at least "
		    "28 days (P28D).");
	if (str_fmt(p->expiry, sizeof(p->expiry), "%s", dur) != 0)
		return api_resp_bad(r,
		    "The field 'attributes.expiryTime' is too long.");
	p->expiry_secs = secs;
	return 0;
}

/* The trigger and action type of one lifetime action into x. */
static int
parse_trigger(json_t *a, struct vlt_rotation_action *x, const char **dur,
    struct api_resp *r)
{
	json_t *trig = json_object_get(a, "trigger"), *v;
	const char *type = json_string_value(
	    json_object_get(json_object_get(a, "action"), "type"));
	const char *tk;

	if (!json_is_object(trig) || json_object_size(trig) != 1 ||
	    type == NULL)
		return api_resp_bad(r,
		    "Each lifetime action needs one trigger and an "
		    "action type.");
	if (strcasecmp(type, "Rotate") == 0)
		x->action = VLT_ROT_ROTATE;
	else if (strcasecmp(type, "Notify") == 0)
		x->action = VLT_ROT_NOTIFY;
	else
		return api_resp_bad(r,
		    "The lifetime action type must be Rotate or "
		    "Notify.");
	json_object_foreach(trig, tk, v) {
		if (strcmp(tk, "timeAfterCreate") == 0)
			x->trigger = VLT_ROT_AFTER_CREATE;
		else if (strcmp(tk, "timeBeforeExpiry") == 0)
			x->trigger = VLT_ROT_BEFORE_EXPIRY;
		*dur = json_string_value(v);
	}
	if (x->trigger == 0 || api_duration_secs(*dur, &x->secs) != 0)
		return api_resp_bad(r,
		    "A trigger is timeAfterCreate or timeBeforeExpiry "
		    "with an ISO 8601 duration.");
	return 0;
}

/* One lifetime action, checked against the rules and the policy so far. */
static int
parse_action(json_t *a, struct vlt_rotation_policy *p, size_t *rotates,
    struct api_resp *r)
{
	struct vlt_rotation_action *x = &p->a[p->n];
	const char *dur = NULL;
	int rc;

	if ((rc = parse_trigger(a, x, &dur, r)) != 0)
		return rc;
	if (x->secs < TRIGGER_MIN)
		return api_resp_bad(r,
		    "A rotation policy trigger must be at least 7 days "
		    "(P7D).");
	if (x->action == VLT_ROT_NOTIFY && x->trigger != VLT_ROT_BEFORE_EXPIRY)
		return api_resp_bad(r,
		    "A Notify action needs a timeBeforeExpiry "
		    "trigger.");
	if (x->action == VLT_ROT_ROTATE && ++*rotates > 1)
		return api_resp_bad(r,
		    "A rotation policy has at most one Rotate action.");
	if (p->expiry_secs != 0 && x->trigger == VLT_ROT_AFTER_CREATE &&
	    x->secs > p->expiry_secs - TRIGGER_MIN)
		return api_resp_bad(r,
		    "timeAfterCreate must be at least 7 days shorter "
		    "than expiryTime.");
	if (str_fmt(x->duration, sizeof(x->duration), "%s", dur) != 0)
		return api_resp_bad(r, "A trigger's duration is too long.");
	p->n++;
	return 0;
}

static int
parse_policy(json_t *body, struct vlt_rotation_policy *p, struct api_resp *r)
{
	json_t *acts = json_object_get(body, "lifetimeActions"), *a;
	size_t i, rotates = 0;
	int rc;

	memset(p, 0, sizeof(*p));
	if ((rc = parse_expiry(body, p, r)) != 0)
		return rc;
	if (acts == NULL || json_is_null(acts))
		return 0;
	if (!json_is_array(acts) || json_array_size(acts) > VLT_ROT_ACTIONS_MAX)
		return api_resp_bad(r,
		    "The field 'lifetimeActions' must be an array of at "
		    "most 4 actions.");
	json_array_foreach(acts, i, a) {
		if ((rc = parse_action(a, p, &rotates, r)) != 0)
			return rc;
	}
	return 0;
}

void
keys_rotation_set(struct api_req *q, struct api_resp *r,
    const struct key_target *t)
{
	struct vlt_rotation_policy p, out;
	json_t *body = NULL;
	int rc;

	if (api_body_object(q, r, &body) != 0)
		return;
	if (parse_policy(body, &p, r) != 0)
		goto out;
	rc = vault_rotation_policy_set(q->vault, t->name, &p, &out);
	if (rc != 0) {
		api_resp_vault_error(r, rc, t->name, NULL);
		goto out;
	}
	send_policy(q, r, t->name, &out);
out:
	json_decref(body);
}
