"""Shared by the Python SDK tests (tests/python/*.py): a real vault (init +
serve on 127.0.0.1, the binary in $P11VAULT_BIN or build/p11vault), the
client settings docs/clients.md names, identities and policies through the
admin CLI, and the "ok - NAME" / "not ok - NAME" lines tests/run.sh counts.
Owns only the processes it starts; never prints a secret or a token.
"""
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import traceback

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))
BIN = os.environ.get("P11VAULT_BIN", os.path.join(ROOT, "build", "p11vault"))
POLL = dict(_polling_interval=0.2)  # the pollers' first look is already done


class Checks:
    """check(name) runs a function at once and prints one TAP-like line."""

    def __init__(self, prefix):
        self.prefix = prefix
        self.results = []

    def __call__(self, name):
        def wrap(fn):
            try:
                fn()
                print("ok - %s: %s" % (self.prefix, name), flush=True)
                self.results.append(True)
            except Exception:  # noqa: BLE001 - every failure is a "not ok"
                print("not ok - %s: %s" % (self.prefix, name), flush=True)
                traceback.print_exc(file=sys.stdout)
                self.results.append(False)
            return fn
        return wrap

    def status(self):
        return 0 if self.results and all(self.results) else 1


def expect_error(fn, cls, status, code=None):
    """fn() raises cls with status (and error.code); the exception."""
    try:
        fn()
    except cls as e:
        assert e.status_code == status, (e.status_code, str(e))
        if code is not None:
            assert e.error is not None and e.error.code == code, (e.error and e.error.code, str(e))
        return e
    raise AssertionError("no %s %d" % (cls.__name__, status))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def read_listening(proc, what):
    line = proc.stdout.readline()  # blocks until ready or exit
    if not line.startswith("listening on "):
        raise RuntimeError("%s did not start: %r" % (what, line))


def stop(proc):
    if proc is not None and proc.poll() is None:
        proc.terminate()
        proc.wait(timeout=30)


class Vault:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="p11vault-py-")
        self.proc = None
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
        try:
            read_listening(self.proc, "serve")
        except RuntimeError:
            self.stop()
            raise

    def stop(self):
        stop(self.proc)
        shutil.rmtree(self.dir, ignore_errors=True)

    def cli(self, *args):
        """An admin command against this vault (--data DIR); its JSON."""
        r = subprocess.run([BIN] + list(args) + ["--data", self.dir],
                           capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            raise RuntimeError("p11vault %s: %s" % (args[0], r.stderr.strip()))
        return json.loads(r.stdout) if r.stdout.strip() else None

    def identity(self, name, perms):
        """A new identity with an access policy of perms; its credential."""
        c = self.cli("identity", "create", "--name", name)
        if perms:
            self.cli("policy", "set", "--object-id", c["objectId"],
                     "--key-permissions", *perms)
        return c

    # the settings of docs/clients.md
    def credential(self, c=None):
        from azure.identity import ClientSecretCredential
        c = c or self.admin
        return ClientSecretCredential(c["tenantId"], c["clientId"], c["clientSecret"],
                                      authority=self.url, instance_discovery=False,
                                      connection_verify=self.ca)

    def opts(self):
        return dict(verify_challenge_resource=False, connection_verify=self.ca,
                    retry_total=0)

    def keys(self, cred):
        from azure.keyvault.keys import KeyClient
        return KeyClient(self.url, cred, **self.opts())

    def crypto(self, key, cred):
        from azure.keyvault.keys.crypto import CryptographyClient
        return CryptographyClient(key, cred, **self.opts())


def run(prefix, body):
    """Imports the SDK, starts a vault, runs body(vault, check); exit status."""
    # the CA is given explicitly: an environment bundle would hide a
    # missing setting
    os.environ.pop("REQUESTS_CA_BUNDLE", None)
    os.environ.pop("SSL_CERT_FILE", None)
    check = Checks(prefix)
    try:
        import azure.identity  # noqa: F401
        import azure.keyvault.keys  # noqa: F401
    except ImportError as e:
        print("not ok - %s: import azure-identity / azure-keyvault-keys "
              "(install python3-azure): %s" % (prefix, e))
        return 1
    try:
        v = Vault()
    except Exception:  # noqa: BLE001
        print("not ok - %s: start a vault" % prefix)
        traceback.print_exc(file=sys.stdout)
        return 1
    try:
        body(v, check)
    except Exception:  # noqa: BLE001 - a failure outside any check
        print("not ok - %s: (outside a check)" % prefix)
        traceback.print_exc(file=sys.stdout)
        return 1
    finally:
        v.stop()
    return check.status()
