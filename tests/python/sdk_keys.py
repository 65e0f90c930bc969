#!/usr/bin/env python3
"""The Azure SDK for Python against a real vault (the settings docs/clients.md
names): azure-identity's ClientSecretCredential with authority=VAULT_URL and
instance_discovery=False, azure-keyvault-keys' KeyClient and
CryptographyClient with verify_challenge_resource=False, both trusting the
vault's CA through connection_verify. Debian's python3-azure
(azure-identity 1.13, azure-keyvault-keys 4.8).

The flows of tests/api/sdk-keys.test.mjs and parity.test.mjs: RSA and EC
keys (P-256, P-384, P-521, P-256K), sign/verify, encrypt/decrypt and
wrap/unwrap with every algorithm, import_key of a JWK, properties (enabled,
tags, expiry), lists and versions, and how errors map to azure-core's
exceptions.

The SDK's CryptographyClient does the public-key half (encrypt, wrapKey,
verify) locally once it could GET the key; the "remote" identity here has
every crypto permission but not get, so its client sends every operation to
the vault: both halves are exercised on the server, and against the SDK's
local (pyca/cryptography) implementation.

Starts its own vault and prints one "ok - NAME" or "not ok - NAME" line a
check, as tests/run.sh counts them; exits 1 when one failed. Run as root,
like the API tests (init seals with the host's systemd-creds key).
"""
import datetime
import hashlib
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import p11v  # noqa: E402
from p11v import expect_error  # noqa: E402

CRYPTO_PERMS = ["encrypt", "decrypt", "wrapKey", "unwrapKey", "sign", "verify"]
CURVES = [("P-256", "ES256", hashlib.sha256), ("P-384", "ES384", hashlib.sha384),
          ("P-521", "ES512", hashlib.sha512), ("P-256K", "ES256K", hashlib.sha256)]
RSA_ALGS = ["RSA-OAEP", "RSA-OAEP-256", "RSA1_5"]


def ec_public(key):
    """The pyca public key of an SDK KeyVaultKey on an EC curve."""
    from cryptography.hazmat.primitives.asymmetric import ec
    curve = {"P-256": ec.SECP256R1, "P-384": ec.SECP384R1, "P-521": ec.SECP521R1,
             "P-256K": ec.SECP256K1}[key.key.crv]()
    x, y = (int.from_bytes(b, "big") for b in (key.key.x, key.key.y))
    return ec.EllipticCurvePublicNumbers(x, y, curve).public_key()


def verify_raw_ec(pub, digest, sig, hashfn):
    """A raw r||s signature over digest, checked with pyca (raises if bad)."""
    from cryptography.hazmat.primitives.asymmetric import ec, utils
    from cryptography.hazmat.primitives import hashes
    half = len(sig) // 2
    der = utils.encode_dss_signature(int.from_bytes(sig[:half], "big"),
                                     int.from_bytes(sig[half:], "big"))
    algo = {hashlib.sha256: hashes.SHA256, hashlib.sha384: hashes.SHA384,
            hashlib.sha512: hashes.SHA512}[hashfn]()
    pub.verify(der, digest, ec.ECDSA(utils.Prehashed(algo)))


def b2i(i):
    return i.to_bytes((i.bit_length() + 7) // 8, "big")


def body(v, check):
    from azure.core.exceptions import (ClientAuthenticationError, HttpResponseError,
                                       ResourceNotFoundError)
    from azure.keyvault.keys import JsonWebKey, KeyOperation
    from azure.keyvault.keys.crypto import (EncryptionAlgorithm, KeyWrapAlgorithm,
                                            SignatureAlgorithm)

    cred = v.credential()
    keys = v.keys(cred)
    remote_id = v.identity("py-remote", CRYPTO_PERMS)
    remote = v.credential(remote_id)
    name = "py-rsa"
    state = {}

    @check("a token from the vault's token endpoint (authority=VAULT_URL)")
    def _token():
        t = cred.get_token("https://vault.azure.net/.default")
        assert t.token.count(".") == 2 and t.expires_on > 0

    @check("create_rsa_key")
    def _create():
        k = keys.create_rsa_key(name, size=2048)
        assert k.name == name and k.key_type in ("RSA", "RSA-HSM"), k.key_type
        assert k.id.startswith(v.url + "/keys/" + name + "/")
        state["key"] = k

    @check("get_key")
    def _get():
        k = keys.get_key(name)
        assert k.id == state["key"].id and len(k.key.n) == 256

    @check("wrap_key / unwrap_key (RSA-OAEP-256)")
    def _wrap():
        cc = v.crypto(state["key"], cred)
        cek = os.urandom(32)
        w = cc.wrap_key(KeyWrapAlgorithm.rsa_oaep_256, cek)
        assert w.encrypted_key != cek
        assert cc.unwrap_key(KeyWrapAlgorithm.rsa_oaep_256, w.encrypted_key).key == cek

    @check("sign / verify (RS256)")
    def _sign():
        cc = v.crypto(state["key"].id, cred)
        digest = hashlib.sha256(b"p11vault python").digest()
        sig = cc.sign(SignatureAlgorithm.rs256, digest).signature
        assert cc.verify(SignatureAlgorithm.rs256, digest, sig).is_valid
        bad = hashlib.sha256(b"something else").digest()
        assert not cc.verify(SignatureAlgorithm.rs256, bad, sig).is_valid

    @check("list_properties_of_keys")
    def _list():
        names = [p.name for p in keys.list_properties_of_keys()]
        assert name in names, names

    @check("begin_delete_key, get_deleted_key, begin_recover_deleted_key")
    def _delete_recover():
        d = keys.begin_delete_key(name, **p11v.POLL).result()
        assert d.name == name and d.recovery_id
        assert keys.get_deleted_key(name).name == name
        try:
            keys.get_key(name)
            raise AssertionError("a deleted key is still readable")
        except ResourceNotFoundError:
            pass
        r = keys.begin_recover_deleted_key(name, **p11v.POLL).result()
        assert r.name == name and keys.get_key(name).id == state["key"].id

    @check("a wrong secret is refused (invalid_client)")
    def _bad_secret():
        a = dict(v.admin, clientSecret="wrong")
        try:
            v.keys(v.credential(a)).get_key(name)
            raise AssertionError("a wrong secret got a key")
        except ClientAuthenticationError as e:
            assert "AADSTS7000215" in str(e) or "invalid_client" in str(e), str(e)

    @check("create_rsa_key 3072 and create_key RSA-HSM: public parts only")
    def _rsa_sizes():
        k = keys.create_rsa_key("py-rsa3072", size=3072)
        assert len(k.key.n) == 384 and k.key.d is None and k.key.p is None
        h = keys.create_key("py-rsahsm", "RSA-HSM", size=2048)
        assert h.key_type == "RSA-HSM", h.key_type
        assert h.key.d is None

    @check("create_ec_key P-256, P-384, P-521, P-256K; ES256/384/512/256K sign on "
           "the vault, verify on the vault and locally")
    def _ec():
        for crv, alg, hashfn in CURVES:
            k = keys.create_ec_key("py-ec-" + crv.replace("-", "").lower(), curve=crv)
            assert k.key_type == "EC" and k.key.crv == crv, (k.key_type, k.key.crv)
            assert k.key.d is None
            assert sorted(k.key_operations) == ["sign", "verify"], k.key_operations
            assert keys.get_key(k.name).key.crv == crv
            digest = hashfn(b"ec " + crv.encode()).digest()
            sig = v.crypto(k, cred).sign(alg, digest).signature
            size = {"P-256": 64, "P-384": 96, "P-521": 132, "P-256K": 64}[crv]
            assert len(sig) == size, (crv, len(sig))
            verify_raw_ec(ec_public(k), digest, sig, hashfn)          # pyca
            assert v.crypto(k, cred).verify(alg, digest, sig).is_valid  # SDK, local
            rc = v.crypto(k.id, remote)                                 # the vault
            assert rc.verify(alg, digest, sig).is_valid, crv
            assert not rc.verify(alg, hashfn(b"other").digest(), sig).is_valid, crv
            rsig = rc.sign(alg, digest).signature
            verify_raw_ec(ec_public(k), digest, rsig, hashfn)

    @check("encrypt / decrypt: RSA-OAEP, RSA-OAEP-256, RSA1_5 (local and vault encrypt)")
    def _encrypt():
        k = state["key"]
        local, rc = v.crypto(k, cred), v.crypto(k.id, remote)
        for alg in RSA_ALGS:
            pt = os.urandom(48)
            c1 = local.encrypt(alg, pt)
            c2 = rc.encrypt(alg, pt)
            assert c2.key_id == k.id and c2.algorithm == alg
            assert c1.ciphertext != c2.ciphertext and len(c2.ciphertext) == 256
            for c in (c1, c2):
                assert local.decrypt(alg, c.ciphertext).plaintext == pt, alg
                assert rc.decrypt(EncryptionAlgorithm(alg), c.ciphertext).plaintext == pt

    @check("wrap_key / unwrap_key: RSA-OAEP, RSA-OAEP-256, RSA1_5 (local and vault wrap)")
    def _wrap_all():
        k = state["key"]
        local, rc = v.crypto(k, cred), v.crypto(k.id, remote)
        for alg in RSA_ALGS:
            dek = os.urandom(32)
            for w in (local.wrap_key(alg, dek), rc.wrap_key(KeyWrapAlgorithm(alg), dek)):
                assert w.encrypted_key != dek and len(w.encrypted_key) == 256
                assert rc.unwrap_key(alg, w.encrypted_key).key == dek, alg
                assert local.unwrap_key(alg, w.encrypted_key).key == dek, alg

    @check("sign / verify RS256/384/512, PS256/384/512 on the vault and locally")
    def _rsa_sign():
        k = state["key"]
        local, rc = v.crypto(k, cred), v.crypto(k.id, remote)
        for alg, hashfn in (("RS256", hashlib.sha256), ("RS384", hashlib.sha384),
                            ("RS512", hashlib.sha512), ("PS256", hashlib.sha256),
                            ("PS384", hashlib.sha384), ("PS512", hashlib.sha512)):
            digest = hashfn(alg.encode()).digest()
            sig = rc.sign(alg, digest).signature
            assert rc.verify(alg, digest, sig).is_valid, alg
            assert local.verify(alg, digest, sig).is_valid, alg
            assert not rc.verify(alg, hashfn(b"x").digest(), sig).is_valid, alg

    @check("import_key of an RSA JWK (and RSA-HSM) and a P-256K JWK: the imported key works")
    def _import():
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
        priv = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        n = priv.private_numbers()
        jwk = JsonWebKey(kty="RSA", n=b2i(n.public_numbers.n), e=b2i(n.public_numbers.e),
                         d=b2i(n.d), p=b2i(n.p), q=b2i(n.q), dp=b2i(n.dmp1), dq=b2i(n.dmq1),
                         qi=b2i(n.iqmp),
                         key_ops=[KeyOperation.wrap_key, KeyOperation.unwrap_key,
                                  KeyOperation.sign, KeyOperation.verify])
        k = keys.import_key("py-imported", jwk, tags={"origin": "pyca"})
        assert k.key.n == jwk.n and k.key.d is None, "the private part came back"
        assert k.properties.tags == {"origin": "pyca"}
        dek = os.urandom(32)
        w = priv.public_key().encrypt(dek, padding.OAEP(padding.MGF1(hashes.SHA256()),
                                                        hashes.SHA256(), None))
        assert v.crypto(k, cred).unwrap_key("RSA-OAEP-256", w).key == dek
        digest = hashlib.sha256(b"imported").digest()
        sig = v.crypto(k, cred).sign("PS256", digest).signature
        from cryptography.hazmat.primitives.asymmetric import utils
        priv.public_key().verify(sig, digest, padding.PSS(padding.MGF1(hashes.SHA256()),
                                                          padding.PSS.DIGEST_LENGTH),
                                 utils.Prehashed(hashes.SHA256()))
        h = keys.import_key("py-imported-hsm", jwk, hardware_protected=True)
        assert h.key_type == "RSA-HSM", h.key_type
        ek = ec.generate_private_key(ec.SECP256K1())
        en = ek.private_numbers()
        ejwk = JsonWebKey(kty="EC", crv="P-256K", x=en.public_numbers.x.to_bytes(32, "big"),
                          y=en.public_numbers.y.to_bytes(32, "big"), d=en.private_value.to_bytes(32, "big"),
                          key_ops=["sign", "verify"])
        e = keys.import_key("py-imported-k1", ejwk)
        assert e.key.crv == "P-256K" and e.key.x == ejwk.x and e.key.d is None
        digest = hashlib.sha256(b"k1").digest()
        sig = v.crypto(e, cred).sign("ES256K", digest).signature
        verify_raw_ec(ek.public_key(), digest, sig, hashlib.sha256)

    @check("update_key_properties: tags, enabled=False refuses use with 403 Forbidden, "
           "enabled=True works again")
    def _update():
        k = keys.create_rsa_key("py-toggle", size=2048)
        dek = os.urandom(32)
        w = v.crypto(k, cred).wrap_key("RSA-OAEP", dek).encrypted_key
        u = keys.update_key_properties(k.name, enabled=False, tags={"env": "test", "owner": "py"})
        assert u.properties.enabled is False and u.properties.tags == {"env": "test", "owner": "py"}
        g = keys.get_key(k.name)
        assert g.properties.enabled is False and g.properties.tags["owner"] == "py"
        for op in (lambda: v.crypto(k.id, remote).unwrap_key("RSA-OAEP", w),
                   lambda: v.crypto(k.id, remote).wrap_key("RSA-OAEP", dek),
                   lambda: v.crypto(k.id, remote).sign("RS256", hashlib.sha256(b"").digest())):
            e = expect_error(op, HttpResponseError, 403, "Forbidden")
            assert "disabled" in str(e).lower(), str(e)
        u = keys.update_key_properties(k.name, k.properties.version, enabled=True)
        assert u.properties.enabled is True and u.properties.tags["env"] == "test"
        assert v.crypto(k.id, remote).unwrap_key("RSA-OAEP", w).key == dek
        past = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=1)
        u = keys.update_key_properties(k.name, expires_on=past)
        assert u.properties.expires_on is not None and abs(
            (u.properties.expires_on - past).total_seconds()) < 2
        e = expect_error(lambda: v.crypto(k.id, remote).unwrap_key("RSA-OAEP", w),
                         HttpResponseError, 403, "Forbidden")
        assert "expired" in str(e).lower(), str(e)

    @check("list_properties_of_keys pages (max_page_size=2); list_properties_of_key_versions "
           "lists every version; a name without a key lists empty")
    def _lists():
        all_names = [p.name for p in keys.list_properties_of_keys(max_page_size=2)]
        assert len(all_names) == len(set(all_names)), all_names
        for n in (name, "py-ec-p256k", "py-imported", "py-toggle"):
            assert n in all_names, (n, all_names)
        k2 = keys.create_rsa_key(name, size=2048)
        ids = [p.id for p in keys.list_properties_of_key_versions(name, max_page_size=1)]
        assert sorted(ids) == sorted([state["key"].id, k2.id]), ids
        assert keys.get_key(name).id == k2.id
        assert keys.get_key(name, state["key"].properties.version).id == state["key"].id
        assert list(keys.list_properties_of_key_versions("py-never-made")) == []

    @check("errors: ResourceNotFoundError (KeyNotFound) for a missing key or version, "
           "HttpResponseError 400 for bad input, 403 Forbidden naming the caller")
    def _errors():
        e = expect_error(lambda: keys.get_key("py-missing"), ResourceNotFoundError, 404,
                         "KeyNotFound")
        assert "py-missing" in e.message, e.message
        expect_error(lambda: keys.get_key(name, "0" * 32), ResourceNotFoundError, 404)
        expect_error(lambda: v.crypto(v.url + "/keys/py-missing", remote).unwrap_key(
            "RSA-OAEP", b"\0" * 256), ResourceNotFoundError, 404)
        expect_error(lambda: keys.create_rsa_key("py-bad", size=1000), HttpResponseError, 400)
        expect_error(lambda: keys.create_ec_key("py-bad", curve="P-224"), HttpResponseError, 400)
        expect_error(lambda: v.crypto(state["key"].id, remote).unwrap_key(
            "RSA-OAEP", b"\1" * 7), HttpResponseError, 400)
        e = expect_error(lambda: v.keys(remote).get_key(name), HttpResponseError, 403,
                         "Forbidden")
        assert remote_id["objectId"] in e.message and "get" in e.message, e.message


if __name__ == "__main__":
    sys.exit(p11v.run("python sdk", body))
