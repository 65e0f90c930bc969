#!/usr/bin/env python3
"""The Azure SDK for Python against a real vault (the settings docs/clients.md
names): azure-identity's ClientSecretCredential with authority=VAULT_URL and
instance_discovery=False, azure-keyvault-keys' KeyClient and
CryptographyClient with verify_challenge_resource=False, both trusting the
vault's CA through connection_verify. Debian's python3-azure
(azure-identity 1.13, azure-keyvault-keys 4.8).

Starts its own vault (init + serve on 127.0.0.1, the binary in
$P11VAULT_BIN or build/p11vault) and prints one "ok - NAME" or
"not ok - NAME" line a check, as tests/run.sh counts them; exits 1 when
one failed. Run as root, like the API tests (init seals with the host's
systemd-creds key).
"""
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import traceback

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("P11VAULT_BIN", os.path.join(ROOT, "build", "p11vault"))

results = []


def check(name):
    def wrap(fn):
        try:
            fn()
            print("ok - python sdk: " + name, flush=True)
            results.append(True)
        except Exception:  # noqa: BLE001 - every failure is a "not ok"
            print("not ok - python sdk: " + name, flush=True)
            traceback.print_exc(file=sys.stdout)
            results.append(False)
        return fn
    return wrap


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Vault:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="p11vault-py-")
        self.port = free_port()
        self.url = "https://127.0.0.1:%d" % self.port
        init = subprocess.run([BIN, "init", "--data", self.dir, "--vault-url", self.url],
                              capture_output=True, text=True, timeout=120)
        if init.returncode != 0:
            raise RuntimeError("init failed: " + init.stderr.strip())
        with open(os.path.join(self.dir, "admin.json")) as f:
            self.admin = json.load(f)
        self.ca = os.path.join(self.dir, "tls", "ca.pem")
        self.proc = subprocess.Popen(
            [BIN, "serve", "--data", self.dir, "--listen", "127.0.0.1:%d" % self.port],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        line = self.proc.stdout.readline()  # blocks until ready or exit
        if not line.startswith("listening on "):
            self.stop()
            raise RuntimeError("serve did not start")

    def stop(self):
        if getattr(self, "proc", None) is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)
        shutil.rmtree(self.dir, ignore_errors=True)


def main():
    # the CA is given explicitly: an environment bundle would hide a
    # missing setting
    os.environ.pop("REQUESTS_CA_BUNDLE", None)
    os.environ.pop("SSL_CERT_FILE", None)
    try:
        from azure.core.exceptions import ClientAuthenticationError, ResourceNotFoundError
        from azure.identity import ClientSecretCredential
        from azure.keyvault.keys import KeyClient
        from azure.keyvault.keys.crypto import (CryptographyClient, KeyWrapAlgorithm,
                                                SignatureAlgorithm)
    except ImportError as e:
        print("not ok - python sdk: import azure-identity / azure-keyvault-keys "
              "(install python3-azure): %s" % e)
        return 1
    v = Vault()
    try:
        a = v.admin
        cred = ClientSecretCredential(a["tenantId"], a["clientId"], a["clientSecret"],
                                      authority=v.url, instance_discovery=False,
                                      connection_verify=v.ca)
        opts = dict(verify_challenge_resource=False, connection_verify=v.ca,
                    retry_total=0)
        keys = KeyClient(v.url, cred, **opts)
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
            cc = CryptographyClient(state["key"], cred, **opts)
            cek = os.urandom(32)
            w = cc.wrap_key(KeyWrapAlgorithm.rsa_oaep_256, cek)
            assert w.encrypted_key != cek
            assert cc.unwrap_key(KeyWrapAlgorithm.rsa_oaep_256, w.encrypted_key).key == cek

        @check("sign / verify (RS256)")
        def _sign():
            cc = CryptographyClient(state["key"].id, cred, **opts)
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
            d = keys.begin_delete_key(name).result()
            assert d.name == name and d.recovery_id
            assert keys.get_deleted_key(name).name == name
            try:
                keys.get_key(name)
                raise AssertionError("a deleted key is still readable")
            except ResourceNotFoundError:
                pass
            r = keys.begin_recover_deleted_key(name).result()
            assert r.name == name and keys.get_key(name).id == state["key"].id

        @check("a wrong secret is refused (invalid_client)")
        def _bad_secret():
            bad = ClientSecretCredential(a["tenantId"], a["clientId"], "wrong",
                                         authority=v.url, instance_discovery=False,
                                         connection_verify=v.ca)
            try:
                KeyClient(v.url, bad, **opts).get_key(name)
                raise AssertionError("a wrong secret got a key")
            except ClientAuthenticationError as e:
                assert "AADSTS7000215" in str(e) or "invalid_client" in str(e), str(e)
    finally:
        v.stop()
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
