#!/usr/bin/env python3
"""Writes small valid seed inputs for the fuzz targets: seeds.py OUTDIR -> OUTDIR/{idx,safetensors,checkpoint}/.

The formats are written here independently of the Swift encoders (IDX, gzip, safetensors, the
checkpoint frame with zlib's CRC-32), so a seed the Swift reader rejects is itself a finding."""
import gzip, json, os, struct, sys, zlib

out = sys.argv[1]

def write(target, name, data):
    os.makedirs(os.path.join(out, target), exist_ok=True)
    with open(os.path.join(out, target, name), "wb") as f:
        f.write(data)

def idx(dims, payload):
    return struct.pack(">I", 0x0800 | len(dims)) + b"".join(struct.pack(">I", d) for d in dims) + bytes(payload)

def safetensors(tensors, metadata=None):
    """tensors: [(name, shape, [floats])] in file order."""
    header, offset, data = {}, 0, b""
    if metadata:
        header["__metadata__"] = metadata
    for name, shape, values in tensors:
        raw = struct.pack("<%df" % len(values), *values)
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + len(raw)]}
        offset += len(raw)
        data += raw
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + data

def frame(body):
    return b"DDPCKPT\n" + struct.pack("<IIQ", 1, zlib.crc32(body), len(body)) + body

# idx: labels (rank 1) and images (rank 3), plain and gzipped.
labels = idx([10], range(10))
images = idx([2, 3, 4], range(24))
write("idx", "labels", labels)
write("idx", "images", images)
write("idx", "labels.gz", gzip.compress(labels, mtime=0))
write("idx", "images.gz", gzip.compress(images, mtime=0))
write("idx", "empty-images", idx([0, 28, 28], []))

# safetensors: with and without metadata, an empty tensor, a scalar.
weights = [("fc1.weight", [2, 3], [0.5, -1.0, 2.0, 0.0, 1e-3, 3.25]), ("fc1.bias", [2], [0.1, -0.1])]
write("safetensors", "weights", safetensors(weights, {"format": "pt"}))
write("safetensors", "plain", safetensors(weights))
write("safetensors", "edge", safetensors([("empty", [0, 4], []), ("scalar", [], [7.0]), ("z", [1], [1.0])]))

# checkpoint: byte 0 even = body to frame, odd = whole file as is.
position = {"step": 12, "epoch": 1, "batchInEpoch": 2, "seed": 42, "globalBatch": 64, "trainCount": 600,
            "bestAccuracy": 0.75, "optimizer": "adam", "optimizerStep": 12, "learningRate": 0.001,
            "model": "784-32-10", "worldSize": 2, "runID": "0badf00d", "config": {"epochs": 3}}
state = json.dumps(position, separators=(",", ":"))
ckpt_tensors = weights + [("optimizer.m", [3], [0.0, 0.25, -0.5]), ("optimizer.v", [3], [0.0, 0.5, 1.0])]
body = safetensors(ckpt_tensors, {"format": "pt", "ddp_train.state": state, "ddp_train.model": "784-32-10"})
write("checkpoint", "body", b"\x00" + body)
write("checkpoint", "file", b"\x01" + frame(body))
old = dict(position, runID=None, bestAccuracy=-1, step=0, optimizerStep=0, batchInEpoch=0)
del old["runID"]
write("checkpoint", "body-no-run", b"\x00" + safetensors(weights, {"ddp_train.state": json.dumps(old)}))
