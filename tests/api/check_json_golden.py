"""effcam-predict --json is pinned byte for byte (timing and memory fields excepted) against golden files written by
the tool before it became a client of libeffcam: front ends built on the API must print the same answer.

Cases run on the scalar kernel path with one thread, whose results do not depend on which x86-64 CPU runs them.
  check_json_golden.py            compare
  check_json_golden.py --write    (re)write the golden files from the current tool
"""
import json
import os
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "e2e"))
import effcam_testlib as t  # noqa: E402

GOLDEN = os.path.join(os.path.dirname(__file__), "golden")
# Fields that measure the run rather than state the answer.
VOLATILE = ("timing_ms", "peak_rss_bytes", "rss_bytes", "arena_bytes", "forward_arena_bytes", "arena_lower_bound_bytes",
            "plan")


def cases():
    """(name, model, images, extra arguments)"""
    labels = os.path.join(t.FOOD101, "labels.txt")
    keras = os.path.join(t.FOOD101, "food101_effv2b0.keras")
    fp16, _ = t.convert(keras, "golden/food101_fp16.effcam", "fp16", labels)
    fp32, _ = t.convert(keras, "golden/food101_fp32.effcam", "fp32", labels)
    samples = [os.path.join(t.FOOD101, "samples", f) for f in ("bibimbap.png", "coffee.png")]
    synthetic = t.test_images(240, 320, 2)
    out = os.path.join(t.TESTDATA, "golden_out")
    yield "food101_fp16_predict", fp16, samples + synthetic, ["--top-k", "7"]
    yield "food101_fp16_gradcam", fp16, samples, ["--cam", "gradcam", "--overlay", os.path.join(out, "{name}.png")]
    yield "food101_fp16_camvariants", fp16, samples[:1], ["--cam", "gradcam++", "--cam-layer", "block6a_expand_conv",
                                                          "--cam-score", "prob", "--cam-class", "3"]
    yield "food101_fp32_hirescam", fp32, samples[1:], ["--cam", "hirescam", "--top-k", "1",
                                                       "--dump-layer", "global_average_pooling2d"]
    yield "food101_fp16_errors", fp16, [os.path.join(t.FOOD101, "labels.txt"), samples[0]], ["--top-k", "2"]


def normalized(stdout, out_dir):
    """The tool's own bytes with the volatile fields cut out and the machine's paths named."""
    lines = []
    for line in stdout.splitlines():
        json.loads(line)  # each line is one JSON object
        for key in VOLATILE:
            line = re.sub(r'"%s":(\{[^}]*\}|[0-9.e+-]+),' % key, "", line)
        lines.append(line.replace(out_dir, "<out>").replace(t.TESTDATA, "<data>").replace(t.SOURCE_DIR, "<src>"))
    return "\n".join(lines) + "\n"


def main():
    write = "--write" in sys.argv
    os.makedirs(GOLDEN, exist_ok=True)
    out_dir = os.path.join(t.TESTDATA, "golden_out")
    os.makedirs(out_dir, exist_ok=True)
    env = dict(os.environ, EFFCAM_DISPATCH="scalar")
    for name, model, images, extra in cases():
        args = [t.PREDICT, "--model", model, "--json", "--threads", "1"] + images + extra
        result = t.run(args, expect_ok=False, env=env)
        got = normalized(result.stdout, out_dir)
        path = os.path.join(GOLDEN, name + ".jsonl")
        if write:
            with open(path, "w") as f:
                f.write(got)
            print(f"wrote {path} ({len(got)} bytes, exit {result.returncode})")
            continue
        with open(path) as f:
            want = f.read()
        t.check(got == want, f"{name}: output equals {os.path.relpath(path, t.SOURCE_DIR)}")
        if got != want:
            for g, w in zip(got.splitlines(), want.splitlines()):
                if g != w:
                    print(f"  first difference:\n  got  {g[:300]}\n  want {w[:300]}")
                    break
    if not write:
        t.finish()


if __name__ == "__main__":
    main()
