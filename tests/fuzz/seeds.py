#!/usr/bin/env python3
"""tests/fuzz/seeds.py — writes the hand-made seed inputs of every target
into tests/fuzz/corpus/<target>/seed-NN (run once; fuzzing adds more).
Formats are described at the top of each tests/fuzz/fuzz_<target>.c."""
import base64, hashlib, json, os, sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
ADMIN_OID = "11111111-2222-4333-8444-555555555555"
ADMIN_CID = "66666666-7777-4888-9999-aaaaaaaaaaaa"
USER_OID = "bbbbbbbb-cccc-4ddd-8eee-ffffffffffff"
USER_CID = "01234567-89ab-4cde-8f01-23456789abcd"
SECRET = "fuzz-secret-not-a-secret"

def b64(b):
    if isinstance(b, str):
        b = b.encode()
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()

def write(target, items):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    for i, data in enumerate(items):
        if isinstance(data, str):
            data = data.encode()
        with open(os.path.join(d, "seed-%02d" % i), "wb") as f:
            f.write(data)

M = {"GET": 0, "PUT": 1, "POST": 2, "PATCH": 3, "DELETE": 4, "HEAD": 5,
     "OPTIONS": 6}

def req(method, path, ver="7.4", maxr="", skip="", body="", notoken=False):
    if not isinstance(body, str):
        body = json.dumps(body)
    flags = M[method] | (8 if notoken else 0)
    return bytes([flags]) + ("%s\n%s\n%s\n%s\n%s" % (path, ver, maxr, skip,
                                                    body)).encode()

router = [
    req("GET", "/healthz", ver=""),
    req("GET", "/keys"),
    req("GET", "/keys", maxr="1"),
    req("GET", "/keys", maxr="2", skip=b64("k1")),
    req("GET", "/keys", maxr="0"),
    req("GET", "/keys", maxr="abc", skip="!!"),
    req("GET", "/keys/k1"),
    req("GET", "/keys/k1/"),
    req("GET", "/keys/k1/versions", maxr="25"),
    req("GET", "/keys/k1/0123456789abcdef0123456789abcdef"),
    req("GET", "/keys/k1", ver=""),
    req("GET", "/keys/k1", ver="9.9"),
    req("GET", "/keys/k1", notoken=True),
    req("POST", "/keys/e2/create", body={"kty": "EC", "crv": "P-256",
        "key_ops": ["sign", "verify"], "attributes": {"enabled": True,
        "nbf": 1700000000, "exp": 4102444800}, "tags": {"a": "b"}}),
    req("POST", "/keys/e3/create", body={"kty": "EC-HSM", "crv": "P-384"}),
    req("POST", "/keys/e3/create", body={"kty": "EC", "key_size": 2048}),
    req("POST", "/keys/e1/rotate", body=""),
    req("PATCH", "/keys/k1", body={"attributes": {"enabled": False,
        "exp": 1}, "tags": {"x": "y"}, "key_ops": ["encrypt"]}),
    req("PATCH", "/keys/e1/", body={"tags": {}}),
    req("DELETE", "/keys/e2"),
    req("GET", "/deletedkeys"),
    req("GET", "/deletedkeys/e2"),
    req("POST", "/deletedkeys/e2/recover"),
    req("DELETE", "/deletedkeys/e2"),
    req("POST", "/keys/k1/encrypt", body={"alg": "RSA-OAEP-256",
        "value": b64("hello")}),
    req("POST", "/keys/k1/wrapkey", body={"alg": "RSA-OAEP",
        "value": b64(b"\x01" * 32)}),
    req("POST", "/keys/k1/decrypt", body={"alg": "RSA1_5",
        "value": b64(b"\x00" * 256)}),
    req("POST", "/keys/k1/unwrapkey", body={"alg": "RSA-OAEP",
        "value": b64(b"\x02" * 256)}),
    req("POST", "/keys/k1/sign", body={"alg": "RS256",
        "value": b64(hashlib.sha256(b"x").digest())}),
    req("POST", "/keys/k1/verify", body={"alg": "PS256",
        "digest": b64(hashlib.sha256(b"x").digest()),
        "value": b64(b"\x00" * 256)}),
    req("POST", "/keys/e1/sign", body={"alg": "ES256",
        "value": b64(hashlib.sha256(b"x").digest())}),
    req("POST", "/keys/e1/verify", body={"alg": "ES256",
        "digest": b64(hashlib.sha256(b"x").digest()),
        "value": b64(b"\x00" * 64)}),
    req("POST", "/keys/k1/sign", body='{"alg":"RS256","alg":"RS384"}'),
    req("POST", "/keys/k1/sign", body='[1,2,3]'),
    req("POST", "/keys/k1/sign", body='{"alg":"RS256","value":"***"}'),
    req("POST", "/keys/k1/backup"),
    req("POST", "/keys/restore", body={"value": b64(b"\x00" * 40)}),
    req("GET", "/keys/k1/rotationpolicy"),
    req("PUT", "/keys/k1/rotationpolicy", body={"lifetimeActions": [
        {"trigger": {"timeBeforeExpiry": "P30D"}, "action": {"type":
        "Rotate"}}], "attributes": {"expiryTime": "P90D"}}),
    req("PUT", "/keys/imp1", body={"key": {"kty": "EC", "crv": "P-256",
        "x": b64(b"\x01" * 32), "y": b64(b"\x02" * 32),
        "d": b64(b"\x03" * 32)}, "hsm": True}),
    req("GET", "/admin/vault", ver=""),
    req("PATCH", "/admin/vault", ver="", body={"properties": {
        "softDeleteRetentionInDays": 30, "enableSoftDelete": True}}),
    req("PATCH", "/admin/vault", ver="", body={"properties": {
        "softDeleteRetentionInDays": 3}}),
    req("PUT", "/admin/vault/accessPolicies/add", ver="", body={
        "properties": {"accessPolicies": [{"tenantId": TENANT,
        "objectId": USER_OID, "permissions": {"keys": ["get", "wrapKey",
        "unwrapKey"]}}]}}),
    req("PUT", "/admin/vault/accessPolicies/replace", ver="", body={
        "properties": {"accessPolicies": [{"objectId": USER_OID,
        "permissions": {"keys": ["all"]}}]}}),
    req("PUT", "/admin/vault/accessPolicies/remove", ver="", body={
        "properties": {"accessPolicies": [{"objectId": USER_OID}]}}),
    req("PUT", "/admin/vault/accessPolicies/bogus", ver="", body="{}"),
    req("GET", "/admin/identities", ver=""),
    req("DELETE", "/admin/identities/" + USER_OID, ver=""),
    req("DELETE", "/admin/identities/" + ADMIN_OID, ver=""),
    req("GET", "/%s/v2.0/.well-known/openid-configuration" % TENANT, ver=""),
    req("GET", "/%s/discovery/v2.0/keys" % TENANT, ver=""),
    req("POST", "/%s/oauth2/v2.0/token" % TENANT, ver="", notoken=True,
        body="grant_type=client_credentials&client_id=%s&client_secret=%s"
        "&scope=https%%3A%%2F%%2Fvault.azure.net%%2F.default" % (ADMIN_CID,
        SECRET)),
    req("GET", "/nope/a/b/c/d/e/f/g/h/i"),
    req("GET", "nopath"),
    req("OPTIONS", "/keys/k1"),
]
write("fuzz_router", router)

form = [
    "grant_type=client_credentials&client_id=%s&client_secret=%s"
    "&scope=https%%3A%%2F%%2Fvault.azure.net%%2F.default" % (ADMIN_CID, SECRET),
    "grant_type=client_credentials&client_id=%s&client_secret=%s"
    "&scope=https://vault.azure.net/.default" % (USER_CID, SECRET),
    "grant_type=client_credentials&client_id=%s&client_secret=wrong"
    "&scope=https://vault.azure.net/.default" % USER_CID,
    "grant_type=client_credentials&client_id=%s&client_id=%s&client_secret=x"
    "&scope=https://vault.azure.net/.default" % (USER_CID, USER_CID),
    "grant_type=password&client_id=a&client_secret=b&scope=c/.default",
    "grant_type=client_credentials&client_id=%s&client_secret=%s"
    "&scope=https://vault.azure.net/.default+other" % (ADMIN_CID, SECRET),
    "grant_type=client_credentials&client_secret=x&scope=/.default",
    "grant_type=client_credentials&client_id=%s&client_secret=%s&scope=%%2F.default" % (ADMIN_CID, SECRET),
    "a=%zz", "a=%4", "=", "&&&", "a", "a=b&c", "a=%00b",
    "grant_type=client_credentials&client_id=%s&client_secret=%s"
    "&scope=api%%3A%%2F%%2Fx%%2F.default&resource=z" % (ADMIN_CID, SECRET),
    "&".join("k%d=v" % i for i in range(40)),
    "", "+=+&%41%42=%43",
]
write("fuzz_form", form)

def jwk_seed(sel, obj):
    return bytes([sel]) + (obj if isinstance(obj, str) else
                           json.dumps(obj)).encode()

# a real RSA-2048 and P-256 private key as JWK (test-only material)
try:
    from cryptography.hazmat.primitives.asymmetric import rsa, ec
    have_crypto = True
except Exception:
    have_crypto = False

def i2b(n, l=None):
    l = l or (n.bit_length() + 7) // 8
    return n.to_bytes(l, "big")

jwks = []
if have_crypto:
    k = rsa.generate_private_key(65537, 2048)
    pn = k.private_numbers()
    pub = pn.public_numbers
    jwks.append({"kty": "RSA", "n": b64(i2b(pub.n)), "e": b64(i2b(pub.e)),
                 "d": b64(i2b(pn.d)), "p": b64(i2b(pn.p)), "q": b64(i2b(pn.q)),
                 "dp": b64(i2b(pn.dmp1)), "dq": b64(i2b(pn.dmq1)),
                 "qi": b64(i2b(pn.iqmp)), "key_ops": ["encrypt", "decrypt",
                 "wrapKey", "unwrapKey", "sign", "verify"]})
    e = ec.generate_private_key(ec.SECP256R1())
    en = e.private_numbers()
    jwks.append({"kty": "EC", "crv": "P-256", "x": b64(i2b(en.public_numbers.x, 32)),
                 "y": b64(i2b(en.public_numbers.y, 32)), "d": b64(i2b(en.private_value, 32))})
    e = ec.generate_private_key(ec.SECP384R1())
    en = e.private_numbers()
    jwks.append({"kty": "EC-HSM", "crv": "P-384", "x": b64(i2b(en.public_numbers.x, 48)),
                 "y": b64(i2b(en.public_numbers.y, 48)), "d": b64(i2b(en.private_value, 48))})
jwks += [
    {"kty": "EC", "crv": "P-256", "x": b64(b"\x01" * 32), "y": b64(b"\x02" * 32),
     "d": b64(b"\x03" * 32)},
    {"kty": "EC", "crv": "P-521", "x": b64(b"\x01" * 66), "y": b64(b"\x02" * 66),
     "d": b64(b"\x03" * 66)},
    {"kty": "RSA", "n": b64(b"\xc1" * 256), "e": "AQAB"},
    {"kty": "RSA", "n": b64(b"\xc1" * 256), "e": "AQAB", "d": b64(b"\x11" * 256)},
    {"kty": "oct", "k": b64(b"\x00" * 32)},
    {"kty": "RSA-HSM", "key_hsm": b64(b"\x00" * 300), "kid":
     "https://127.0.0.1:8443/keys/kek/0123456789abcdef0123456789abcdef"},
    {"kty": "EC-HSM", "crv": "P-256", "key_hsm": b64(json.dumps({
        "schema_version": "1.0.0", "header": {"kid":
        "https://127.0.0.1:8443/keys/kek", "alg": "dir", "enc":
        "CKM_RSA_AES_KEY_WRAP"}, "ciphertext": b64(b"\x00" * 296),
        "generator": "fuzz"})), "kid": "https://127.0.0.1:8443/keys/kek"},
    {"kty": "RSA-HSM", "key_hsm": b64(json.dumps({
        "schema_version": "1.0.0", "header": {"kid":
        "https://127.0.0.1:8443/keys/kek", "alg": "dir", "enc":
        "CKM_RSA_AES_KEY_WRAP"}, "ciphertext": b64(b"\x55" * 600)}))},
]
jwk = []
for i, j in enumerate(jwks):
    jwk.append(jwk_seed(i & 3, {"key": j, "hsm": bool(i & 1),
        "attributes": {"enabled": True, "exportable": False},
        "tags": {"src": "fuzz"}}))
    jwk.append(jwk_seed(0, {"key": j}))
jwk += [jwk_seed(0, "{}"), jwk_seed(0, '{"key":null}'), jwk_seed(0, '{"key":[]}'),
        jwk_seed(1, '{"key":{"kty":"RSA","n":"","e":""}}'),
        jwk_seed(2, '{"key":{"kty":"EC","crv":"P-256","x":"!","y":"!"}}'),
        jwk_seed(0, '{"key":{"kty":"EC","crv":"P-256"},"key":{}}')]
write("fuzz_jwk", jwk)

restore = [
    b"\x00", b"\x00" + b"\x00" * 64, b"\x00" + os.urandom(300),
    b"\x00" + b"P11VAULT-BACKUP",
    b"\x00" + json.dumps({"v": 1, "name": "k1", "blob": b64(b"\x00" * 64)}).encode(),
    b"\x01{}", b"\x01{\"value\":null}", b"\x01{\"value\":\"\"}",
    b"\x01{\"value\":\"AAAA\"}", b"\x01{\"value\":\"***\"}", b"\x01[]",
    b"\x01{\"value\":\"" + b"A" * 5000 + b"\"}",
]
write("fuzz_restore", restore)

b64s = [b"", b"A", b"AA", b"AAA", b"AAAA", b"AB==", b"AB=", b"ABC=",
        b"-_-_", b"+/+/", b"YWJj", b"YWJjZA", b"YWJjZA==", b"YW Jj",
        b"\x00\x01\x02", b"====", b"A===", bytes(range(256)),
        b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_",
        b"YWJjZA=x", b"YQ", b"YR", b"YWI", b"YWJ"]
write("fuzz_b64url", b64s)

# JWT seeds: mode 1 = header\nclaims signed by the target with its key.
ISS = "https://127.0.0.1:8443/%s/v2.0" % TENANT
def claims(**kw):
    c = {"iss": ISS, "aud": "https://vault.azure.net", "tid": TENANT,
         "oid": ADMIN_OID, "appid": ADMIN_CID, "iat": 1700000000,
         "nbf": 1700000000, "exp": 4102444800, "jti": "x"}
    c.update(kw)
    return json.dumps({k: v for k, v in c.items() if v is not None})
KID = "EVecNi8H8xJYsBd-omraMA"  # SHA-256(SPKI)[:16] of fuzz_jwt.c's fixed key
def hdr(**kw):
    h = {"alg": "ES256", "typ": "JWT", "kid": KID}
    h.update(kw)
    return json.dumps({k: v for k, v in h.items() if v is not None})
jwt = [
    b"\x01" + (hdr() + "\n" + claims()).encode(),
    b"\x03" + (hdr() + "\n" + claims()).encode(),
    b"\x01" + (hdr(typ=None) + "\n" + claims(aud="https://vault.azure.net/")).encode(),
    b"\x01" + (hdr(alg="none") + "\n" + claims()).encode(),
    b"\x01" + (hdr(alg="HS256") + "\n" + claims()).encode(),
    b"\x01" + (hdr(kid="other") + "\n" + claims()).encode(),
    b"\x01" + (hdr(crit=["exp"]) + "\n" + claims()).encode(),
    b"\x01" + (hdr() + "\n" + claims(exp=1)).encode(),
    b"\x01" + (hdr() + "\n" + claims(nbf=4102444800)).encode(),
    b"\x01" + (hdr() + "\n" + claims(tid="00000000-0000-4000-8000-000000000000")).encode(),
    b"\x01" + (hdr() + "\n" + claims(oid=USER_OID)).encode(),
    b"\x01" + (hdr() + "\n" + claims(iss="x")).encode(),
    b"\x01" + (hdr() + "\n" + claims(aud=["https://vault.azure.net"])).encode(),
    b"\x01" + (hdr() + "\n" + claims(exp="4102444800")).encode(),
    b"\x01" + (hdr() + "\n" + claims(iat=None, jti=None, appid=None)).encode(),
    b"\x01" + (hdr() + "\n[]").encode(),
    b"\x01" + b"{}\n{}",
    b"\x01" + b"not json\n{",
    b"\x00eyJhbGciOiJFUzI1NiJ9.e30.AAAA",
    b"\x00a.b.c", b"\x00...", b"\x00", b"\x00eyJ9.eyJ9.eyJ9.eyJ9",
    b"\x00" + b"A" * 9000,
]
write("fuzz_jwt", jwt)

# fuzz_tokp: whole messages of hsm/proto.h (header | fields), requests and
# answers of every op, plus broken ones.
import struct
def msg(op, fields, status=0, ident=7, nf=None, plen=None, ver=1):
    body = b"".join(struct.pack(">I", len(f)) + f for f in fields)
    return struct.pack(">BBHIiI", ver, op, len(fields) if nf is None else nf,
                       ident, status, len(body) if plen is None else plen) + body
u32 = lambda v: struct.pack(">I", v)
u64 = lambda v: struct.pack(">Q", v)
BIND = b"rsa-key/0123456789abcdef0123456789abcdef"
BLOB = b"P11V\x02\x01\x08\x00" + b"\x11" * 1232
tokp = [
    msg(1, [b"/usr/lib/softhsm/libsofthsm2.so", b"p11vault", b"/var/lib/p11vault/hsm/user.pin",
            b"/usr/lib:/usr/local/lib", b"", u32(8), u32(0)], ident=0),
    msg(2, [b"/usr/lib/softhsm/libsofthsm2.so", b"/usr/lib", b"p11vault", b"so-pin", b"user-pin"], ident=0),
    msg(3, []),
    msg(4, [BIND, u32(1), u32(2048), u32(0)]),
    msg(5, [BIND, BLOB, u32(1), b"\x42" * 256, u32(512)]),
    msg(6, [BIND, BLOB, u32(7), b"\x42" * 32, u32(512)]),
    msg(7, [BIND]),
    msg(8, [b"eyJhbGciOiJFUzI1NiJ9.e30"]),
    msg(9, []), msg(10, []),
    msg(11, [BIND, b"\x30\x82\x04\xbd" + b"\x00" * 64]),
    msg(12, [BIND, b"kek/00", BLOB, b"\x55" * 1800]),
    msg(13, [b"P11K\x01" + b"\x00" * 40]), msg(14, [b"\x01" * 80]),
    msg(15, [BIND, b"P11V\x01\x01\x08\x00" + b"\x11" * 1200]),
    # answers
    msg(3, [], status=0), msg(5, [b"\x99" * 32], status=0),
    msg(5, [], status=-2), msg(10, [u64(5), u64(1), u64(2), u64(8)]),
    msg(11, [u32(1), u32(2048), u32(0), BLOB, b"\x30" * 294]),
    # broken
    msg(5, [BIND, BLOB, u32(1), b"\x42" * 256, u32(512)], plen=10),
    msg(5, [BIND, BLOB, u32(1)], nf=5),
    msg(4, [b"a\x00b", u32(1), u32(2048), u32(0)]),
    msg(4, [BIND, u32(1), u32(2048), u32(0)], ver=2),
    msg(0, []), msg(99, []), msg(3, [], status=-9), msg(3, [b"x"]),
    msg(4, [BIND, b"\x00\x01", u32(2048), u32(0)]),
    b"\x01\x05\x00\x05" + b"\xff" * 12, b"",
]
write("fuzz_tokp", tokp)
