#!/usr/bin/env python3
"""azure-identity 1.13's ManagedIdentityCredential through
`p11vault identity-agent` (Debian's python3-azure): the agent holds a
workload host's identity credential and answers the Azure Instance Metadata
Service token protocol on loopback; the workload has only
AZURE_POD_IDENTITY_AUTHORITY_HOST=http://127.0.0.1:PORT (the IMDS code
path of ManagedIdentityCredential, as docs/clients.md says), never the
secret. The identity wraps and unwraps a DEK with
CryptographyClient(credential=ManagedIdentityCredential()), is refused
(403) what its policy lacks, and loses access on policy delete although the
agent still holds its token. Also the agent's IMDS answers themselves (the
Metadata header, numbers as strings, a client_id/object_id that is not the
agent's identity refused as IMDS does). Prints "ok - NAME" /
"not ok - NAME" lines for tests/run.sh.
"""
import base64
import hashlib
import json
import os
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import p11v  # noqa: E402
from p11v import expect_error  # noqa: E402

RESOURCE = "https://vault.azure.net"


def jwt_claims(token):
    p = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(p + "=" * (-len(p) % 4)))


class Agent:
    """`p11vault identity-agent` for the credential c, on a free loopback port."""

    def __init__(self, v, c):
        self.path = os.path.join(v.dir, "host-identity.json")
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(dict(c, vaultUrl=v.url), f)
        self.url = "http://127.0.0.1:%d" % p11v.free_port()
        self.proc = subprocess.Popen(
            [p11v.BIN, "identity-agent", "--credential", self.path,
             "--listen", self.url[len("http://"):], "--ca", v.ca],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        try:
            p11v.read_listening(self.proc, "identity-agent")
        except RuntimeError:
            self.stop()
            raise

    def get(self, query, headers=None):
        """GET the IMDS token path: (status, JSON)."""
        req = urllib.request.Request(
            self.url + "/metadata/identity/oauth2/token?" + urllib.parse.urlencode(query),
            headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    def stop(self):
        p11v.stop(self.proc)


def body(v, check):
    from azure.core.exceptions import HttpResponseError
    from azure.identity import CredentialUnavailableError, ManagedIdentityCredential

    keys = v.keys(v.credential())
    kek = keys.create_rsa_key("py-cmk", size=2048)
    # the customer-managed-key guides' grant, without get: every wrap and
    # unwrap of CryptographyClient goes to the vault
    mi = v.identity("py-workload", ["wrapKey", "unwrapKey"])
    agent = Agent(v, mi)
    # what the workload's environment holds: where IMDS is, nothing secret
    for var in ("IDENTITY_ENDPOINT", "IDENTITY_HEADER", "MSI_ENDPOINT", "MSI_SECRET",
                "IMDS_ENDPOINT", "AZURE_CLIENT_ID", "AZURE_TENANT_ID",
                "AZURE_FEDERATED_TOKEN_FILE"):
        os.environ.pop(var, None)
    os.environ["AZURE_POD_IDENTITY_AUTHORITY_HOST"] = agent.url
    state = {}
    try:
        @check("the agent answers IMDS: Metadata header required (400), token with "
               "numbers as strings and the identity's oid")
        def _imds():
            q = {"api-version": "2018-02-01", "resource": RESOURCE}
            st, j = agent.get(q)
            assert st == 400 and j["error"] == "invalid_request", (st, j)
            st, j = agent.get(q, {"Metadata": "true"})
            tok = j.pop("access_token", "")  # never printed
            assert st == 200, (st, j)
            assert j["token_type"] == "Bearer" and j["resource"] == RESOURCE, j
            for n in ("expires_in", "expires_on"):
                assert isinstance(j[n], str) and int(j[n]) > 0, (n, j[n])
            c = jwt_claims(tok)
            assert c["oid"] == mi["objectId"] and c["aud"].rstrip("/") == RESOURCE, c
            st, j = agent.get({"api-version": "2018-02-01"}, {"Metadata": "true"})
            assert st == 400, st

        @check("ManagedIdentityCredential (IMDS path, AZURE_POD_IDENTITY_AUTHORITY_HOST) "
               "gets the identity's token")
        def _token():
            t = ManagedIdentityCredential().get_token(RESOURCE + "/.default")
            c = jwt_claims(t.token)
            assert c["oid"] == mi["objectId"] and c["appid"] == mi["clientId"], c
            assert c["tid"] == mi["tenantId"]
            t2 = ManagedIdentityCredential(client_id=mi["clientId"]).get_token(
                RESOURCE + "/.default")
            assert jwt_claims(t2.token)["oid"] == mi["objectId"]

        @check("CryptographyClient(credential=ManagedIdentityCredential()) wraps and "
               "unwraps a DEK on the vault")
        def _wrap():
            cc = v.crypto(kek.id, ManagedIdentityCredential())
            dek = os.urandom(32)
            for alg in ("RSA-OAEP", "RSA-OAEP-256"):
                w = cc.wrap_key(alg, dek)
                assert w.encrypted_key != dek and len(w.encrypted_key) == 256
                assert cc.unwrap_key(alg, w.encrypted_key).key == dek
            # and what the admin's (local) wrap made
            local = v.crypto(kek, v.credential()).wrap_key("RSA-OAEP-256", dek)
            assert cc.unwrap_key("RSA-OAEP-256", local.encrypted_key).key == dek
            state["wrapped"] = local.encrypted_key
            state["dek"] = dek

        @check("the managed identity is refused (403 Forbidden) what its policy lacks: "
               "sign, get, create")
        def _refused():
            mic = ManagedIdentityCredential()
            e = expect_error(lambda: v.crypto(kek.id, mic).sign(
                "RS256", hashlib.sha256(b"x").digest()), HttpResponseError, 403, "Forbidden")
            assert mi["objectId"] in e.message and "sign" in e.message, e.message
            mk = v.keys(mic)
            expect_error(lambda: mk.get_key(kek.name), HttpResponseError, 403, "Forbidden")
            expect_error(lambda: mk.create_rsa_key("py-mi-made"), HttpResponseError, 403,
                         "Forbidden")

        @check("policy delete: the next unwrap is 403 though the agent still holds the "
               "token; policy set restores it")
        def _revoke():
            cc = v.crypto(kek.id, ManagedIdentityCredential())
            assert cc.unwrap_key("RSA-OAEP-256", state["wrapped"]).key == state["dek"]
            v.cli("policy", "delete", "--object-id", mi["objectId"])
            expect_error(lambda: cc.unwrap_key("RSA-OAEP-256", state["wrapped"]),
                         HttpResponseError, 403, "Forbidden")
            v.cli("policy", "set", "--object-id", mi["objectId"],
                  "--key-permissions", "wrapKey", "unwrapKey")
            assert cc.unwrap_key("RSA-OAEP-256", state["wrapped"]).key == state["dek"]

        @check("a client_id or object_id that is not the agent's identity is refused "
               "(400, as IMDS does; CredentialUnavailableError)")
        def _other_identity():
            other = "00000000-0000-4000-8000-000000000001"
            for q in ({"client_id": other}, {"object_id": other}, {"msi_res_id": "/x"}):
                st, j = agent.get(dict({"api-version": "2018-02-01", "resource": RESOURCE}, **q),
                                  {"Metadata": "true"})
                j.pop("access_token", None)  # never printed
                assert st == 400 and j["error"] == "invalid_request", (q, st, j)
            st, _ = agent.get({"api-version": "2018-02-01", "resource": RESOURCE,
                               "object_id": mi["objectId"]}, {"Metadata": "true"})
            assert st == 200, st
            try:
                ManagedIdentityCredential(client_id=other).get_token(RESOURCE + "/.default")
                raise AssertionError("another identity's client_id got a token")
            except CredentialUnavailableError as e:
                assert "not been assigned" in str(e), str(e)
    finally:
        agent.stop()


if __name__ == "__main__":
    sys.exit(p11v.run("python managed identity", body))
