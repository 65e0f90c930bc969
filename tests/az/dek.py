"""tests/az/dek.py — a workload identity wraps and unwraps a data-encryption
key with its vault key, as a customer-managed-key service does (Azure SDK for
Python: azure-identity's ClientSecretCredential, azure-keyvault-keys'
CryptographyClient with the SDK's strict challenge check left on).

usage: dek.py CREDENTIAL.json KEY_URL CA.pem wrap STATE.json
         wraps a fresh 32-byte DEK (RSA-OAEP-256), unwraps it, writes
         {"wrapped","kid","dek"} (base64) to STATE.json
       dek.py CREDENTIAL.json KEY_URL CA.pem unwrap STATE.json
         unwraps STATE.json's DEK with the key version that wrapped it
       dek.py CREDENTIAL.json KEY_URL CA.pem refused [STATUS...]
         a wrap is refused with one of STATUS (default 403; exit 0 only then)
CREDENTIAL.json: what `p11vault identity credential` prints (tenantId,
clientId, clientSecret, vaultUrl: the sign-in authority).
"""
import base64
import json
import os
import sys

from azure.core.exceptions import HttpResponseError
from azure.identity import ClientSecretCredential
from azure.keyvault.keys.crypto import CryptographyClient, KeyWrapAlgorithm

ALG = KeyWrapAlgorithm.rsa_oaep_256


def client(cred_file, key_url, ca):
    c = json.load(open(cred_file))
    cred = ClientSecretCredential(c["tenantId"], c["clientId"], c["clientSecret"],
                                  authority=c["vaultUrl"], instance_discovery=False,
                                  connection_verify=ca)
    # verify_challenge_resource is left at its default (True): the vault's
    # host must end with "." + the challenge resource's host
    return CryptographyClient(key_url, cred, connection_verify=ca)


def main(argv):
    cred_file, key_url, ca, action = argv[1:5]
    cc = client(cred_file, key_url, ca)
    if action == "wrap":
        dek = os.urandom(32)
        w = cc.wrap_key(ALG, dek)
        back = cc.unwrap_key(ALG, w.encrypted_key)
        if back.key != dek:
            print("unwrapped DEK differs", file=sys.stderr)
            return 1
        json.dump({"wrapped": base64.b64encode(w.encrypted_key).decode(), "kid": w.key_id,
                   "dek": base64.b64encode(dek).decode()}, open(argv[5], "w"))
        print("wrapped with", w.key_id)
        return 0
    if action == "unwrap":
        s = json.load(open(argv[5]))
        cc = client(cred_file, s["kid"], ca)
        back = cc.unwrap_key(ALG, base64.b64decode(s["wrapped"]))
        if back.key != base64.b64decode(s["dek"]):
            print("unwrapped DEK differs", file=sys.stderr)
            return 1
        print("unwrapped with", s["kid"])
        return 0
    if action == "refused":
        try:
            cc.wrap_key(ALG, os.urandom(32))
        except HttpResponseError as e:
            print("refused:", e.status_code, e.message.splitlines()[0])
            want = [int(x) for x in argv[5:]] or [403]
            return 0 if e.status_code in want else 1
        print("the wrap was not refused", file=sys.stderr)
        return 1
    print("unknown action " + action, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
