#!/usr/bin/env python3
"""Writes small valid seed inputs for the fuzz targets: seeds.py OUTDIR -> OUTDIR/{idx,safetensors,checkpoint,image,csv}/.

The formats are written here independently of the Swift encoders (IDX, gzip, safetensors, the
checkpoint frame with zlib's CRC-32), so a seed the Swift reader rejects is itself a finding."""
import base64, gzip, json, os, struct, sys, zlib

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

# image: PNGs built here chunk by chunk (gray, gray+alpha, RGB, RGBA, 16-bit, 1-bit, palette with
# transparency, a gAMA chunk), and JPEGs (gray, RGB 4:2:0, progressive) written once by PIL, stored
# as base64.
def png(width, height, color_type, depth, rows, extra=()):
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, depth, color_type, 0, 0, 0)
    raw = b"".join(b"\x00" + bytes(r) for r in rows)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + b"".join(chunk(k, d) for k, d in extra)
            + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))

write("image", "gray.png", png(4, 3, 0, 8, [[(x * 60 + y * 20) % 256 for x in range(4)] for y in range(3)]))
write("image", "gray-alpha.png", png(3, 2, 4, 8, [[10, 255, 20, 128, 30, 0], [40, 1, 50, 2, 60, 3]]))
write("image", "rgb.png", png(3, 2, 2, 8, [[255, 0, 0, 0, 255, 0, 0, 0, 255], [1, 2, 3, 4, 5, 6, 7, 8, 9]]))
write("image", "rgba.png", png(2, 2, 6, 8, [[10, 20, 30, 0, 40, 50, 60, 128], [70, 80, 90, 255, 1, 2, 3, 4]]))
write("image", "gray16.png", png(3, 1, 0, 16, [[0x00, 0x80, 0x12, 0x34, 0xFF, 0xFF]]))
write("image", "gamma.png", png(2, 1, 2, 8, [[0, 64, 128, 255, 1, 2]], [(b"gAMA", struct.pack(">I", 100000))]))
write("image", "rgba16.png", png(1, 2, 6, 16, [[0xFF, 0xFF, 0x80, 0x80, 0, 0, 0x40, 0x00], [1, 2, 3, 4, 5, 6, 0xFF, 0xFF]]))
write("image", "bits1.png", png(9, 2, 0, 1, [[0b10110010, 0b10000000], [0b01001101, 0]]))
palette = bytes([255, 0, 0, 0, 255, 0, 0, 0, 255, 9, 9, 9])
write("image", "palette.png", png(4, 2, 3, 8, [[0, 1, 2, 3], [3, 2, 1, 0]], [(b"PLTE", palette), (b"tRNS", bytes([0, 128]))]))
write("image", "palette2.png", png(5, 1, 3, 2, [[0b00011011, 0b00000000]], [(b"PLTE", palette)]))
jpegs = {
    "gray.jpg": "/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDABALDA4MChAODQ4SERATGCgaGBYWGDEjJR0oOjM9PDkzODdASFxOQERXRTc4UG1RV19iZ2hnPk1xeXBkeFxlZ2P/wAALCAAIAAgBAREA/8QAFAABAAAAAAAAAAAAAAAAAAAAAv/EACAQAAECBQUAAAAAAAAAAAAAAAECAwAEETFhBQYSIUH/2gAIAQEAAD8AW3mGdOkVzkx00yjkq1TgV9Nhkx//2Q==",
    "rgb.jpg": "/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDABALDA4MChAODQ4SERATGCgaGBYWGDEjJR0oOjM9PDkzODdASFxOQERXRTc4UG1RV19iZ2hnPk1xeXBkeFxlZ2P/2wBDARESEhgVGC8aGi9jQjhCY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2P/wAARCAAIAAgDASIAAhEBAxEB/8QAFQABAQAAAAAAAAAAAAAAAAAAAAH/xAAeEAACAQMFAAAAAAAAAAAAAAABAhEAAzESISJBUf/EABUBAQEAAAAAAAAAAAAAAAAAAAAD/8QAGhEAAwEAAwAAAAAAAAAAAAAAAQIRAANBUf/aAAwDAQACEQMRAD8AlxVREsottSY1Swg4GcRvHkEdHmpSpPysgWdjA8FgN93/2Q==",
    "progressive.jpg": "/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDABALDA4MChAODQ4SERATGCgaGBYWGDEjJR0oOjM9PDkzODdASFxOQERXRTc4UG1RV19iZ2hnPk1xeXBkeFxlZ2P/2wBDARESEhgVGC8aGi9jQjhCY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2P/wgARCAAQABADASIAAhEBAxEB/8QAFgABAQEAAAAAAAAAAAAAAAAAAAEC/8QAFAEBAAAAAAAAAAAAAAAAAAAAAP/aAAwDAQACEAMQAAABRo//xAAXEAADAQAAAAAAAAAAAAAAAAABETEA/9oACAEBAAEFAkHRqf/EABQRAQAAAAAAAAAAAAAAAAAAAAD/2gAIAQMBAT8Bf//EABURAQEAAAAAAAAAAAAAAAAAAAAx/9oACAECAQE/AY//xAAeEAABAgcBAAAAAAAAAAAAAAAAEUEBEjFCYcHw0f/aAAgBAQAGPwKVugKxiuxLe9P/xAAdEAEAAgICAwAAAAAAAAAAAAABABEhwVGhMXGx/9oACAEBAAE/ITAeDT6t2JfEBfQ6ZdmMU+DSJxA12mk//9oADAMBAAIAAwAAABAj/8QAGBEBAAMBAAAAAAAAAAAAAAAAASFx8MH/2gAIAQMBAT8QZnW8M//EABkRAAEFAAAAAAAAAAAAAAAAAAABMWGx4f/aAAgBAgEBPxB01qn/xAAbEAEAAwADAQAAAAAAAAAAAAABABEhMVFh8f/aAAgBAQABPxBBKiVUPJObnwi6SaErX39yDekFbUv1ZqmpvuPGcs3If//Z",
}
for name, b64 in jpegs.items():
    write("image", name, base64.b64decode(b64))

# csv: small tables: a header, quotes with "" and newlines, CRLF and a BOM, tabs, categorical
# features and string labels, comment and blank lines, several numeric forms.
write("csv", "header", b"age,bmi,y\n59,32.1,151\n48,21.6,75\n72,30.5,141\n")
write("csv", "quotes", b'name,note,y\n"Smith, J","said ""hi""\nthen left",1\n"Doe",plain,0\n')
write("csv", "crlf-bom", b"\xef\xbb\xbfx,y\r\n1.5,a\r\n\r\n2.5,b\r\n")
write("csv", "tabs", b"f1\tf2\tlabel\n0.1\t1e3\tcat\n-2\t+4.5\tdog\n")
write("csv", "categorical", b"color,size,y\nred,1,3\nblue,2,5\ngreen,3,3\nred,4,5\n")
write("csv", "comments", b"# the last digit is the class code\n0,1,6,15,3\n0,0,10,16,7\n\n# more\n1,2,3,4,3\n")
write("csv", "regression", b"a,t1,b,t2\n1,10,2,0.5\n3,20,4,1.5\n5,-3,0,2.25\n")
