"""What differs between two lensmae checkpoints (safetensors): the tensors whose
bytes differ, those only one has, and each key of the `lensmae` description whose
value differs (nested keys joined by dots).

    python bench/checkpoint_diff.py A.safetensors B.safetensors

Reads the files as they are (no framework needed): an 8-byte header length, the JSON
header, then the tensors' bytes.
"""
import json
import struct
import sys


def load(path):
    with open(path, "rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(length))
        data = f.read()
    meta = json.loads(header.pop("__metadata__", {}).get("lensmae", "{}"))
    tensors = {k: (v["dtype"], v["shape"], data[v["data_offsets"][0]:v["data_offsets"][1]]) for k, v in header.items()}
    return tensors, meta


def differing_keys(a, b, path=""):
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            yield from differing_keys(a.get(key), b.get(key), f"{path}.{key}" if path else key)
    elif a != b:
        yield path, a, b


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    (ta, ma), (tb, mb) = load(sys.argv[1]), load(sys.argv[2])
    same = [k for k in ta if k in tb and ta[k] == tb[k]]
    print(f"tensors: {len(same)} of {len(ta)} / {len(tb)} byte for byte the same")
    for k in sorted(k for k in ta if k in tb and ta[k] != tb[k]):
        print(f"tensor {k} differs")
    for k in sorted(set(ta) ^ set(tb)):
        print(f"tensor {k} only in {'A' if k in ta else 'B'}")
    for key, a, b in differing_keys(ma, mb):
        print(f"description {key}: {json.dumps(a)[:200]} -> {json.dumps(b)[:200]}")


if __name__ == "__main__":
    main()
