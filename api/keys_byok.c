/*
 * TEMPORARY placeholder written by the lead so that the tree links while
 * issue 5 (import, backup, restore, rotation policies) is written. The
 * engineer implementing issue 5 replaces this whole file.
 */
#include "api/api.h"

static void
unsupported(struct api_resp *r)
{
	api_resp_error(r, 501, "NotSupported", "Not yet available.");
}

void api_key_import(struct api_req *q, struct api_resp *r, const char *n)
{ (void)q; (void)n; unsupported(r); }
void api_key_backup(struct api_req *q, struct api_resp *r, const char *n)
{ (void)q; (void)n; unsupported(r); }
void api_key_restore(struct api_req *q, struct api_resp *r)
{ (void)q; unsupported(r); }
void api_rotation_policy_get(struct api_req *q, struct api_resp *r,
    const char *n)
{ (void)q; (void)n; unsupported(r); }
void api_rotation_policy_set(struct api_req *q, struct api_resp *r,
    const char *n)
{ (void)q; (void)n; unsupported(r); }
