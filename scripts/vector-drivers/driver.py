"""Sets keys through a real Python memcached client (scripts/record-vectors.ts runs it with /usr/bin/python3).

stdin: {"client", "variant", "servers": ["h:p", ...], "weights": [...] | null, "keys": [...]}
stdout: {"failed": n} (keys the client refused or could not store)
"""
import json
import sys

d = json.load(sys.stdin)
client, variant, servers, weights, keys = d["client"], d.get("variant"), d["servers"], d.get("weights"), d["keys"]
failed = 0

if client == "python-memcached":
    import memcache

    c = memcache.Client([(s, w) for s, w in zip(servers, weights)] if weights else servers)
    for k in keys:
        if not c.set(k, "1"):
            failed += 1
elif client == "pylibmc":
    import pylibmc

    behaviors = {
        "default": {},
        "ketama": {"ketama": True},
        "ketama_weighted": {"ketama_weighted": True},
        "ketama_hash_md5": {"ketama": True, "hash": "md5"},
    }[variant]
    # libmemcached reads "host:port:weight"; binary protocol, as its ASCII mode refuses non-ASCII keys.
    spec = [f"{s}:{w}" for s, w in zip(servers, weights)] if weights else servers
    c = pylibmc.Client(spec, binary=True, behaviors=behaviors)
    for k in keys:
        try:
            c.set(k, "1")
        except Exception:
            failed += 1
elif client == "pymemcache":
    from pymemcache.client.hash import HashClient

    c = HashClient([(s.rsplit(":", 1)[0], int(s.rsplit(":", 1)[1])) for s in servers], allow_unicode_keys=True)
    for k in keys:
        try:
            c.set(k.encode("utf-8") if variant == "byteskeys" else k, b"1")
        except Exception:
            failed += 1
else:
    raise SystemExit(f"unknown client {client}")

print(json.dumps({"failed": failed}))
