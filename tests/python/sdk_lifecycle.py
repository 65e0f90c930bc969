#!/usr/bin/env python3
"""The Azure SDK for Python over a key's life (the flows of
tests/api/sdk-keys.test.mjs' soft-delete tests and backup-rotation.test.mjs):
begin_delete_key / list_deleted_keys / begin_recover_deleted_key (every
version back), purge_deleted_key (crypto-shredded), backup_key /
restore_key_backup, rotate_key, get/update_key_rotation_policy, and
get_random_bytes. Settings as docs/clients.md; Debian's python3-azure
(azure-identity 1.13, azure-keyvault-keys 4.8). Prints "ok - NAME" /
"not ok - NAME" lines for tests/run.sh.
"""
import base64
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import p11v  # noqa: E402
from p11v import expect_error  # noqa: E402


def body(v, check):
    from azure.core.exceptions import (HttpResponseError, ResourceExistsError,
                                       ResourceNotFoundError)
    from azure.keyvault.keys import KeyRotationLifetimeAction, KeyRotationPolicy

    cred = v.credential()
    keys = v.keys(cred)
    # wrapKey/unwrapKey but not get: its CryptographyClient goes to the vault
    remote = v.credential(v.identity("py-remote", ["wrapKey", "unwrapKey"]))
    dek = os.urandom(32)
    state = {}

    def wrap_versions(name, n):
        """n versions of name, a DEK wrapped under each: [(kid, wrapped)]."""
        out = []
        for _ in range(n):
            k = keys.create_rsa_key(name, size=2048)
            out.append((k.id, v.crypto(k.id, remote).wrap_key("RSA-OAEP-256", dek).encrypted_key))
        return out

    def unwraps(kid, wrapped):
        return v.crypto(kid, remote).unwrap_key("RSA-OAEP-256", wrapped).key == dek

    def unwraps_safe(kid, wrapped):
        """False also when the vault refuses the ciphertext (400)."""
        try:
            return unwraps(kid, wrapped)
        except HttpResponseError as e:
            assert e.status_code == 400, e.status_code
            return False

    @check("begin_delete_key; list_deleted_keys lists it with recovery id and dates; "
           "create over it is 409 Conflict (inner ObjectIsDeletedButRecoverable)")
    def _delete():
        state["del"] = wrap_versions("py-del", 2)
        keys.create_ec_key("py-del2", curve="P-256")
        for n in ("py-del", "py-del2"):
            d = keys.begin_delete_key(n, **p11v.POLL).result()
            assert d.name == n and d.recovery_id.endswith("/deletedkeys/" + n), d.recovery_id
            assert d.deleted_date is not None and d.scheduled_purge_date > d.deleted_date
        listed = {d.name: d for d in keys.list_deleted_keys(max_page_size=1)}
        assert {"py-del", "py-del2"} <= set(listed), list(listed)
        assert listed["py-del"].recovery_id and listed["py-del"].scheduled_purge_date
        assert "py-del" not in [p.name for p in keys.list_properties_of_keys()]
        expect_error(lambda: keys.get_key("py-del"), ResourceNotFoundError, 404)
        e = expect_error(lambda: keys.create_rsa_key("py-del"), ResourceExistsError, 409,
                         "Conflict")
        assert e.error.innererror == {"code": "ObjectIsDeletedButRecoverable"}, e.error.innererror
        expect_error(lambda: v.crypto(state["del"][0][0], remote).unwrap_key(
            "RSA-OAEP-256", state["del"][0][1]), ResourceNotFoundError, 404)

    @check("begin_recover_deleted_key brings every version back: old ciphertexts unwrap")
    def _recover():
        r = keys.begin_recover_deleted_key("py-del", **p11v.POLL).result()
        assert r.id == state["del"][-1][0], (r.id, state["del"])
        for kid, wrapped in state["del"]:
            assert unwraps(kid, wrapped), kid
        expect_error(lambda: keys.get_deleted_key("py-del"), ResourceNotFoundError, 404)

    @check("purge_deleted_key: get_deleted_key 404, the name is created fresh, "
           "old ciphertext is dead")
    def _purge():
        # a live key is not a deleted one (Azure: 404)
        expect_error(lambda: keys.purge_deleted_key("py-del"), ResourceNotFoundError, 404)
        keys.begin_delete_key("py-del", **p11v.POLL).result()
        keys.purge_deleted_key("py-del")
        expect_error(lambda: keys.get_deleted_key("py-del"), ResourceNotFoundError, 404)
        assert "py-del" not in [d.name for d in keys.list_deleted_keys()]
        fresh = keys.create_rsa_key("py-del", size=2048)
        assert [p.id for p in keys.list_properties_of_key_versions("py-del")] == [fresh.id]
        old_kid, old_wrapped = state["del"][0]
        expect_error(lambda: unwraps(old_kid, old_wrapped), ResourceNotFoundError, 404)
        assert not unwraps_safe(fresh.id, old_wrapped), "a purged key's ciphertext unwrapped"

    @check("backup_key / restore_key_backup after purge: every version back, old "
           "ciphertexts unwrap; restore over a live key 409, an altered blob 400")
    def _backup():
        wrapped = wrap_versions("py-bak", 2)
        blob = keys.backup_key("py-bak")
        assert isinstance(blob, bytes) and len(blob) > 100
        expect_error(lambda: keys.restore_key_backup(blob), ResourceExistsError, 409)
        keys.begin_delete_key("py-bak", **p11v.POLL).result()
        keys.purge_deleted_key("py-bak")
        expect_error(lambda: keys.get_key("py-bak"), ResourceNotFoundError, 404)
        r = keys.restore_key_backup(blob)
        assert r.name == "py-bak" and r.id == wrapped[-1][0], r.id
        ids = sorted(p.id for p in keys.list_properties_of_key_versions("py-bak"))
        assert ids == sorted(k for k, _ in wrapped), ids
        for kid, w in wrapped:
            assert unwraps(kid, w), kid
        keys.begin_delete_key("py-bak", **p11v.POLL).result()
        keys.purge_deleted_key("py-bak")
        bad = bytearray(blob)
        bad[len(bad) // 2] ^= 0x01
        expect_error(lambda: keys.restore_key_backup(bytes(bad)), HttpResponseError, 400)
        expect_error(lambda: keys.restore_key_backup(base64.b64encode(b"not a backup")),
                     HttpResponseError, 400)

    @check("rotate_key: a new version of the same type, size and key_ops; a "
           "versionless client wraps with the newest")
    def _rotate():
        k = keys.create_rsa_key("py-rot", size=2048, key_operations=["wrapKey", "unwrapKey"])
        r = keys.rotate_key("py-rot")
        assert r.id != k.id and r.name == "py-rot", r.id
        assert r.key_type == k.key_type and len(r.key.n) == len(k.key.n)
        assert sorted(r.key_operations) == sorted(k.key_operations), r.key_operations
        w = v.crypto(v.url + "/keys/py-rot", remote).wrap_key("RSA-OAEP-256", dek)
        assert unwraps(r.id, w.encrypted_key), "versionless wrap not under the newest version"
        assert not unwraps_safe(k.id, w.encrypted_key)
        assert unwraps(k.id, v.crypto(k.id, remote).wrap_key("RSA-OAEP-256", dek).encrypted_key)
        assert len(list(keys.list_properties_of_key_versions("py-rot"))) == 2
        expect_error(lambda: keys.rotate_key("py-missing"), ResourceNotFoundError, 404)

    @check("get_key_rotation_policy (default) / update_key_rotation_policy round trip; "
           "below Azure's minimums 400")
    def _policy():
        keys.create_rsa_key("py-pol", size=2048)
        d = keys.get_key_rotation_policy("py-pol")
        assert d.id == v.url + "/keys/py-pol/rotationpolicy", d.id
        assert [(a.action, a.time_before_expiry) for a in d.lifetime_actions] == \
            [("Notify", "P30D")], [(a.action, a.time_before_expiry) for a in d.lifetime_actions]
        p = KeyRotationPolicy(expires_in="P90D", lifetime_actions=[
            KeyRotationLifetimeAction("Rotate", time_after_create="P30D"),
            KeyRotationLifetimeAction("Notify", time_before_expiry="P10D")])
        u = keys.update_key_rotation_policy("py-pol", p)
        assert u.expires_in == "P90D", u.expires_in
        g = keys.get_key_rotation_policy("py-pol")
        assert g.expires_in == "P90D" and g.created_on is not None
        got = [(a.action, a.time_after_create, a.time_before_expiry) for a in g.lifetime_actions]
        assert got == [("Rotate", "P30D", None), ("Notify", None, "P10D")], got
        for bad in (KeyRotationPolicy(lifetime_actions=[
                        KeyRotationLifetimeAction("Rotate", time_after_create="P6D")]),
                    KeyRotationPolicy(expires_in="P27D")):
            expect_error(lambda: keys.update_key_rotation_policy("py-pol", bad),
                         HttpResponseError, 400)
        assert keys.get_key_rotation_policy("py-pol").expires_in == "P90D"

    @check("get_random_bytes: not served (404; Azure serves it on Managed HSM only)")
    def _random():
        # the vault has no POST /rng: pinned here, so that adding it is noticed
        expect_error(lambda: keys.get_random_bytes(16), HttpResponseError, 404)


if __name__ == "__main__":
    sys.exit(p11v.run("python sdk lifecycle", body))
