"""What Azure CLI (azure-cli 2.45, Debian's) prints for REST bodies of the
keys API: reads {"bundle": KeyBundle, "policy": KeyRotationPolicy} (REST
JSON) on stdin and writes {"bundle": ..., "policy": ...} as `az keyvault key
show` and `az keyvault key rotation-policy show` would print them, through
az's own transformer (transform_key_output), the SDK's models and az's
todict with its additional-properties flattening. Exit 3 when az's modules
are not installed (the caller skips)."""
import json
import sys

try:
    from azure.keyvault.keys import KeyVaultKey, KeyRotationPolicy
    from azure.keyvault.keys._generated import v7_4_preview_1 as gen
    from azure.keyvault.keys._generated._serialization import Deserializer
    from azure.cli.command_modules.keyvault._transformers import transform_key_output
    from azure.cli.core.commands import AzCliCommandInvoker
    from knack.util import todict
except ImportError as e:  # pragma: no cover
    print(f"azure-cli modules missing: {e}", file=sys.stderr)
    sys.exit(3)

inp = json.load(sys.stdin)
models = {k: v for k, v in vars(gen.models).items() if isinstance(v, type)}
d = Deserializer(models)
post = AzCliCommandInvoker.remove_additional_prop_layer
out = {}
if inp.get("bundle") is not None:
    key = KeyVaultKey._from_key_bundle(d("KeyBundle", inp["bundle"]))
    out["bundle"] = todict(transform_key_output(key), post)
if inp.get("policy") is not None:
    pol = KeyRotationPolicy._from_generated(d("KeyRotationPolicy", inp["policy"]))
    out["policy"] = todict(pol, post)


def default(o):
    if isinstance(o, (bytes, bytearray)):
        return o.decode()
    raise TypeError(type(o))


print(json.dumps(out, default=default))
