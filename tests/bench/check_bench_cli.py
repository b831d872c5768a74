#!/usr/bin/python3
"""effcam-bench and effcam-fma-peak end to end, on the bundled Food-101 EfficientNetV2-B0 (models/).

Checks that the JSON report has the documented fields and that its figures agree with each other (throughput
and GFLOP/s from the median, peak fraction from the FMA peak, profile totals from the graph), the graph's
multiply-adds against Keras's published figure for EfficientNetV2-B0, the Grad-CAM layer --cam / --cam-layer
report, and the command-line errors.
"""
import json
import math
import os
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "e2e"))
from effcam_testlib import BINARY_DIR, FOOD101, SANITIZED, check, convert, finish, run, skip  # noqa: E402

BENCH = os.path.join(BINARY_DIR, "bench", "effcam-bench")
FMA_PEAK = os.path.join(BINARY_DIR, "bench", "effcam-fma-peak")
FIELDS = ["model", "threads", "iters", "cam", "latency_ms", "images_per_s", "peak_rss_bytes", "gflops", "peak_fraction"]
# EfficientNetV2-B0 at 224x224 with the 1000-class head: 0.718 G multiply-adds, as published by an independent
# implementation (SharanSMenon/ai-paper-implementations, efficientnetv2/README.md); the paper says 0.72B "FLOPs".
# Food-101's 101-class head has 1.2 M fewer.
KERAS_B0_MACS = 0.718e9
# Timed iterations per report: several, so the latency statistics have samples to order. Under the sanitizers
# (each forward pass ~20x slower) two and no warm-up: repeating the same pass finds no other memory error.
WARMUP, ITERS = (0, 2) if SANITIZED else (1, 3)


def bench_json(model, *extra):
    result = run([BENCH, "--model", model, "--iters", str(ITERS), "--warmup", str(WARMUP), "--json", *extra])
    lines = result.stdout.splitlines()
    check(len(lines) == 1, f"--json {' '.join(extra)} prints one line")
    return json.loads(lines[0])


def close(a, b, rel=1e-6):
    return math.isclose(a, b, rel_tol=rel)


def main():
    for tool in (BENCH, FMA_PEAK):
        if not os.path.exists(tool):
            skip(f"{tool} is not built")
    model, _ = convert(os.path.join(FOOD101, "food101_effv2b0.keras"), "bench_food101.effcam")

    for threads in ("1", "2"):
        report = bench_json(model, "--threads", threads)
        check(all(field in report for field in FIELDS), f"threads {threads}: the report has {FIELDS}")
        lat = report["latency_ms"]
        check(0 < lat["min"] <= lat["median"] <= lat["p90"], f"threads {threads}: 0 < min <= median <= p90 ({lat})")
        check(report["threads"] == int(threads) and report["iters"] == ITERS, "threads and iters are echoed")
        check(report["cam"] is None, f"threads {threads}: without --cam the cam field is null")
        check(close(report["images_per_s"], 1000 / lat["median"]), "images/s = 1000 / median ms")
        macs = report["multiply_adds"]
        check(abs(macs - KERAS_B0_MACS) < 0.02 * KERAS_B0_MACS, f"{macs} multiply-adds ~ the published 0.718 G for B0")
        check(close(report["gflops"], 2 * macs / (lat["median"] * 1e6)), "GFLOP/s = 2 x multiply-adds / median")
        check(report["fma_peak_gflops"] > 0 and close(report["peak_fraction"], report["gflops"] / report["fma_peak_gflops"]),
              "peak fraction = GFLOP/s / measured FMA peak")
        weights = os.path.getsize(model)
        check(weights // 2 < report["peak_rss_bytes"] < 10 * weights,
              f"peak RSS {report['peak_rss_bytes']} is of the order of the {weights}-byte model")

    report = bench_json(model, "--profile")
    profile = report["profile"]
    ops = profile["ops"]
    check(sum(op["multiply_adds"] for op in ops) == report["multiply_adds"], "profile multiply-adds add up to the graph's")
    check(all(a["ms"] >= b["ms"] for a, b in zip(ops, ops[1:])), "profile ops are sorted slowest first")
    check(sorted(op["index"] for op in ops) == list(range(len(ops))), "profile has every op once")
    check(abs(sum(op["share"] for op in ops) - 1) < 1e-6, "op shares add up to 1")
    check(sum(kind["count"] for kind in profile["kinds"]) == len(ops), "kind counts add up to the op count")
    convs = [op for op in ops if op["kind"] == "Conv"]
    check(any(op["name"] == "stem_conv" and op["output"] == [112, 112, 32] for op in convs),
          "the stem conv is listed with its Keras name and 112x112x32 output")

    # --cam: each iteration is forward + Grad-CAM at the model's default layer (top_conv for EfficientNetV2),
    # or at the one --cam-layer names.
    report = bench_json(model, "--cam")
    check(report["cam"] == "top_conv", f"--cam reports the default Grad-CAM layer top_conv (got {report['cam']})")
    check(0 < report["latency_ms"]["min"] <= report["latency_ms"]["median"], "--cam reports latencies")
    report = bench_json(model, "--cam-layer", "block5c_add", "--threads", "2")
    check(report["cam"] == "block5c_add", f"--cam-layer block5c_add is reported (got {report['cam']})")
    text = run([BENCH, "--model", model, "--iters", "1", "--warmup", "0", "--cam"]).stdout
    check("forward + Grad-CAM at top_conv" in text, "the text report says it timed forward + Grad-CAM at top_conv")
    bad = run([BENCH, "--model", model, "--iters", "1", "--cam-layer", "no_such_layer"], expect_ok=False)
    check(bad.returncode == 1 and len(bad.stderr.splitlines()) == 1 and "no_such_layer" in bad.stderr,
          f"--cam-layer with an unknown layer: one line naming it, exit 1 (got {bad.returncode}: {bad.stderr!r})")
    bad = run([BENCH, "--model", model, "--cam-layer"], expect_ok=False)
    check(bad.returncode == 2 and "--cam-layer needs a value" in bad.stderr, "--cam-layer without a value is refused")

    text = run([BENCH, "--model", model, "--iters", "2", "--warmup", "0", "--profile"]).stdout
    for needle in ("latency", "images/s", "peak RSS", "GFLOP/s", "per op kind", "stem_conv"):
        check(needle in text, f"the text report shows '{needle}'")

    bad = run([BENCH, "--model", model, "--iters", "0"], expect_ok=False)
    check(bad.returncode == 2 and "--iters wants a whole number" in bad.stderr, "--iters 0 is refused")
    bad = run([BENCH, "--model", model, "--frobnicate"], expect_ok=False)
    check(bad.returncode == 2 and "unknown argument --frobnicate" in bad.stderr, "an unknown option is refused")
    bad = run([BENCH, "--model", model + ".missing"], expect_ok=False)
    check(bad.returncode == 1 and ".missing" in bad.stderr, "a missing model is named")
    with tempfile.TemporaryDirectory() as empty:
        os.chdir(empty)
        bad = run([BENCH], expect_ok=False)
        check(bad.returncode == 1 and "scripts/main.sh" in bad.stderr, "without out/food101.effcam it says how to make it")
    check("out/food101.effcam" in run([BENCH, "--help"]).stdout, "--help names the default model")

    peak = json.loads(run([FMA_PEAK, "--threads", "1", "--json"]).stdout)
    check(peak["isa"] in ("avx512", "avx2") and peak["threads"] == 1, f"FMA peak isa {peak['isa']}, one thread")
    check(peak["gflops_per_core"] > 1 and close(peak["gflops_total"], peak["gflops_per_core"]), "FMA peak figures")
    has_bf16 = "avx512_bf16" in open("/proc/cpuinfo").read().split()
    check((peak["bf16"] is not None) == has_bf16, f"a BF16 peak exactly where the CPU has avx512_bf16 ({has_bf16})")
    if peak["bf16"] is not None:
        check(peak["bf16"]["isa"] == "avx512_bf16" and peak["bf16"]["gflops_per_core"] > 1, "BF16 peak figures")
    bad = run([FMA_PEAK, "--threads", "x"], expect_ok=False)
    check(bad.returncode == 2 and "--threads" in bad.stderr, "effcam-fma-peak refuses a bad thread count")
    finish()


if __name__ == "__main__":
    main()
