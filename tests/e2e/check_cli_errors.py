"""Bad input at the command line: every case gives one line on stderr naming the problem and a non-zero exit code,
never a crash, never a partial output file; effcam-predict still processes the good images of a batch.
"""
import io
import json
import os
import struct
import sys
import zipfile
import zlib

import h5py

sys.path.insert(0, os.path.dirname(__file__))
import effcam_testlib as t  # noqa: E402

WORK = os.path.join(t.TESTDATA, "cli_errors")


def write(name, data):
    path = os.path.join(WORK, name)
    with open(path, "wb") as f:
        f.write(data)
    return path


def expect_error(label, args, needle, code=1, env=None):
    result = t.run(args, expect_ok=False, env=env)
    lines = result.stderr.strip().splitlines()
    t.check(result.returncode == code, f"{label}: exit code {result.returncode} (want {code})")
    t.check(len(lines) >= 1 and needle.lower() in lines[0].lower(), f"{label}: error names '{needle}': {lines[:1]}")
    return result


def rezip(source, replace):
    """A copy of a .keras archive with members replaced (bytes) or removed (None)."""
    out = io.BytesIO()
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as zout:
        for item in zin.infolist():
            data = replace.get(item.filename, zin.read(item.filename))
            if data is not None:
                zout.writestr(item.filename, data)
    return out.getvalue()


def edited_weights(source, edit):
    """The archive's model.weights.h5 after edit(h5file)."""
    with zipfile.ZipFile(source) as z:
        raw = z.read("model.weights.h5")
    path = os.path.join(WORK, "weights.h5")
    with open(path, "wb") as f:
        f.write(raw)
    with h5py.File(path, "r+") as h5:
        edit(h5)
    with open(path, "rb") as f:
        return f.read()


def png_header(width, height):
    """A PNG signature + IHDR chunk declaring width x height RGB, and nothing else."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return b"\x89PNG\r\n\x1a\n" + chunk


def converter_cases(food):
    out = os.path.join(WORK, "out.effcam")
    convert = lambda label, path, needle: expect_error(label, [t.CONVERT, path, out], needle)  # noqa: E731
    original = open(food, "rb").read()
    convert("missing input", os.path.join(WORK, "nope.keras"), "nope.keras")
    convert("empty file", write("empty.keras", b""), "empty.keras")
    convert("random bytes", write("random.keras", os.urandom(4096)), "random.keras")
    convert("truncated .keras", write("truncated.keras", original[: len(original) // 2]), "truncated.keras")
    convert("zip without config.json", write("noconfig.keras", rezip(food, {"config.json": None})), "config.json")
    convert("invalid JSON", write("badjson.keras", rezip(food, {"config.json": b"{\"class_name\": "})), "json")
    config = json.loads(zipfile.ZipFile(food).read("config.json"))
    config["config"]["layers"] = 5
    convert("wrong JSON types", write("types.keras", rezip(food, {"config.json": json.dumps(config).encode()})),
            "layers")
    name = "layers/conv2d/vars/0"
    missing = edited_weights(food, lambda h5: h5.__delitem__(name))
    convert("HDF5 dataset missing", write("missing.keras", rezip(food, {"model.weights.h5": missing})), "stem_conv")

    def reshape(h5):
        data = h5[name][()]
        del h5[name]
        h5[name] = data.reshape(-1)[:-1]
    wrong = edited_weights(food, reshape)
    convert("HDF5 dataset of the wrong shape", write("shape.keras", rezip(food, {"model.weights.h5": wrong})),
            "stem_conv")
    t.check(not os.path.exists(out), "no output file is left after failed conversions")
    expect_error("unwritable output", [t.CONVERT, food, "/nonexistent-dir/out.effcam"], "nonexistent-dir")
    expect_error("bad --dtype", [t.CONVERT, food, out, "--dtype", "fp8"], "dtype", code=2)
    expect_error("bad --input-size", [t.CONVERT, food, out, "--input-size", "0,5"], "input-size", code=2)
    expect_error("labels count", [t.CONVERT, food, out, "--labels", write("labels.txt", b"a\nb\n")], "labels")


def predict_cases(food, labels, sample):
    model, _ = t.convert(food, "cli_food101.effcam", labels=labels)
    good = open(model, "rb").read()
    predict = lambda label, path, needle: expect_error(label, [t.PREDICT, "--model", path, sample], needle)  # noqa
    predict("truncated model", write("truncated.effcam", good[: len(good) - 4096]), "truncated")
    flipped = bytearray(good)
    flipped[len(flipped) - 100] ^= 0x40
    predict("flipped weight byte", write("flipped.effcam", bytes(flipped)), "checksum")
    predict("not a model", write("text.effcam", b"hello world, not a model" * 10), "text.effcam")

    bad_images = {
        "text.png": b"this is not an image\n" * 20,
        "empty.png": b"",
        "truncated.png": open(sample, "rb").read()[:500],
        "huge.png": png_header(60000, 60000),
        "tiff.tif": b"II*\x00" + os.urandom(200),
    }
    paths = [write(name, data) for name, data in bad_images.items()]
    result = t.run([t.PREDICT, "--model", model, "--json", paths[0], sample] + paths[1:], expect_ok=False)
    lines = result.stderr.strip().splitlines()
    t.check(result.returncode == 1, f"bad images: exit code {result.returncode} (want 1)")
    t.check(len(lines) == len(bad_images), f"bad images: one stderr line each ({len(lines)} for {len(bad_images)})")
    for name, line in zip(bad_images, lines):
        t.check(name in line, f"bad image {name}: {line}")
    records = [json.loads(line) for line in result.stdout.splitlines()]
    good_records = [r for r in records if "error" not in r]
    t.check(len(good_records) == 1 and good_records[0]["top_k"][0]["label"] == "bibimbap",
            "the good image in the batch is still classified (bibimbap)")
    # A forced kernel path that is unknown stops the tool before the first image with one line, also when kernels run
    # on worker threads (a path the CPU lacks fails at the same point: ops/kernels.cpp, find_path).
    for threads in ("1", "2"):
        label = f"EFFCAM_DISPATCH=sse9, {threads} thread(s)"
        result = expect_error(label, [t.PREDICT, "--model", model, sample, sample, "--threads", threads],
                              "EFFCAM_DISPATCH: kernel path 'sse9'", env=dict(os.environ, EFFCAM_DISPATCH="sse9"))
        t.check(len(result.stderr.strip().splitlines()) == 1, f"{label}: one line on stderr")
    expect_error("missing --model", [t.PREDICT, sample], "--model", code=2)
    expect_error("bad --threads", [t.PREDICT, "--model", model, sample, "--threads", "0"], "threads", code=2)


def main():
    os.makedirs(WORK, exist_ok=True)
    folder = t.FOOD101
    food = os.path.join(folder, "food101_effv2b0.keras")
    converter_cases(food)
    predict_cases(food, os.path.join(folder, "labels.txt"), os.path.join(folder, "samples", "bibimbap.png"))
    t.finish()


if __name__ == "__main__":
    main()
