#!/usr/bin/python3
"""effcam and ONNX Runtime side by side on EfficientNetV2-S at 300x300, CPU, batch 1.

Builds nothing: it uses the tools scripts/build.sh puts in build/ (or --build DIR). It makes what it needs,
once, under BUILD/bench-data: the effcam file (fp16) converted from the generated Keras EfficientNetV2-S
(tests/models/make_keras_models.py; 7-class head), the ONNX file exported from torchvision's efficientnet_v2_s
(random weights; 1000-class head) and the npm packages of bench/ort (`npm ci --ignore-scripts`: onnxruntime-node
ships its native library in the package). The two graphs have the same backbone; the multiply-adds of both
are reported.

Then it alternates, round after round, `effcam-bench --iters K`, `effcam-bench --cam --iters K` (forward +
Grad-CAM at the default layer, top_conv) and `node bench/ort/ort_bench.js --iters K` for every thread count, so
that all see the same machine conditions, and prints the median over the rounds of each one's per-round median
latency, the effcam / ORT latency ratio, peak RSS: effcam-bench's whole process, and ORT's Node process minus an
empty Node process (what ORT adds), and what Grad-CAM adds to effcam's latency (forward + Grad-CAM / forward).
Ends with a Markdown table.

usage: /usr/bin/python3 bench/side_by_side.py [--rounds R] [--iters K] [--warmup W] [--threads 1,2]
                                              [--build DIR] [--keras FILE] [--markdown OUT.md]
"""
import argparse
import json
import os
import shutil
import statistics

from benchlib import KERAS_NAME, PYTHON, ROOT, die, effcam_model, run, run_json, say, stale, work_dir

ORT_DIR = os.path.join(ROOT, "bench", "ort")
EXPORT = os.path.join(ORT_DIR, "export_torchvision_effv2s.py")


def install_npm_packages():
    for tool in ("node", "npm"):
        if not shutil.which(tool):
            die(f"{tool} is not installed (scripts/install-deps.sh installs Debian's nodejs and npm)")
    lock = os.path.join(ORT_DIR, "package-lock.json")
    installed = os.path.join(ORT_DIR, "node_modules", ".package-lock.json")
    if stale(installed, lock, os.path.join(ORT_DIR, "package.json")):
        say("npm ci --ignore-scripts in bench/ort")
        run(["npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund"], cwd=ORT_DIR)


def onnx_model(work):
    path = os.path.join(work, "effv2s_torchvision_300.onnx")
    info_path = path + ".json"
    if stale(path, EXPORT) or stale(info_path, EXPORT):
        say("exporting torchvision efficientnet_v2_s to ONNX")
        info = run_json([PYTHON, EXPORT, path])
        with open(info_path, "w") as f:
            json.dump(info, f)
    with open(info_path) as f:
        return path, json.load(f)


def markdown(summary, ort_version):
    lines = [
        f"| EfficientNetV2-S 300x300, batch 1 | effcam | ONNX Runtime {ort_version} (CPU EP) | effcam / ORT |",
        "|---|---|---|---|",
        f"| model | Keras graph, fp16 weights, {summary['effcam_classes']} classes | torchvision graph, fp32, "
        f"{summary['ort_classes']} classes | |",
        f"| multiply-adds | {summary['effcam_macs'] / 1e9:.3f} G | {summary['ort_macs'] / 1e9:.3f} G | "
        f"{summary['effcam_macs'] / summary['ort_macs']:.3f} |",
    ]
    for row in summary["threads"]:
        t = row["threads"]
        e, o = row["effcam"], row["ort"]
        lines += [
            f"| median latency, {t} thread{'s' if t > 1 else ''} | {e['median_ms']:.1f} ms | {o['median_ms']:.1f} ms | "
            f"**{e['median_ms'] / o['median_ms']:.2f}** |",
            f"| min latency, {t} thread{'s' if t > 1 else ''} | {e['min_ms']:.1f} ms | {o['min_ms']:.1f} ms | "
            f"{e['min_ms'] / o['min_ms']:.2f} |",
            f"| GFLOP/s, {t} thread{'s' if t > 1 else ''} | {e['gflops']:.1f} | {o['gflops']:.1f} | |",
            f"| peak RSS, {t} thread{'s' if t > 1 else ''} | {e['peak_rss_mib']:.1f} MiB (whole process) | "
            f"{o['peak_rss_mib']:.1f} MiB (Node process {o['process_rss_mib']:.1f} - empty Node "
            f"{summary['node_baseline_mib']:.1f}) | {e['peak_rss_mib'] / o['peak_rss_mib']:.2f} |",
            f"| forward + Grad-CAM at {row['effcam_cam']['layer']}, {t} thread{'s' if t > 1 else ''} | "
            f"{row['effcam_cam']['median_ms']:.1f} ms = {row['cam_ratio']:.3f} x forward | (no Grad-CAM) | |",
        ]
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description="effcam vs ONNX Runtime, alternating rounds")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--iters", type=int, default=10, help="timed runs per tool per round")
    parser.add_argument("--warmup", type=int, default=2, help="untimed runs before them, in every process")
    parser.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    parser.add_argument("--build", default=os.path.join(ROOT, "build"), help="the build directory (scripts/build.sh)")
    parser.add_argument("--keras", help=f"the Keras EfficientNetV2-S (default: the generated {KERAS_NAME})")
    parser.add_argument("--markdown", help="also write the table to this file")
    args = parser.parse_args()
    threads = [int(t) for t in args.threads.split(",")]
    if args.rounds < 1 or args.iters < 1 or args.warmup < 0 or not threads or min(threads) < 1:
        die("--rounds, --iters and --threads want positive numbers, --warmup a non-negative one")

    build = os.path.abspath(args.build)
    bench = os.path.join(build, "bench", "effcam-bench")
    work = work_dir(build, ["bench/effcam-bench", "apps/effcam-convert"])

    install_npm_packages()
    onnx, onnx_info = onnx_model(work)
    model = effcam_model(build, work, args.keras)
    ort_bench = ["node", os.path.join(ORT_DIR, "ort_bench.js")]
    node_baseline = statistics.median(run_json(ort_bench + ["--baseline"])["peak_rss_bytes"] for _ in range(3))

    common = ["--iters", str(args.iters), "--warmup", str(args.warmup)]
    results = {t: {"effcam": [], "effcam_cam": [], "ort": []} for t in threads}
    for r in range(1, args.rounds + 1):
        for t in threads:
            e = run_json([bench, "--model", model, "--threads", str(t), "--json"] + common)
            c = run_json([bench, "--model", model, "--threads", str(t), "--json", "--cam"] + common)
            o = run_json(ort_bench + ["--model", onnx, "--threads", str(t)] + common)
            results[t]["effcam"].append(e)
            results[t]["effcam_cam"].append(c)
            results[t]["ort"].append(o)
            print(f"round {r}/{args.rounds}, {t} thread(s): effcam median {e['latency_ms']['median']:.1f} ms, "
                  f"ORT median {o['latency_ms']['median']:.1f} ms", flush=True)
            print(f"round {r}/{args.rounds}, {t} thread(s): effcam forward + Grad-CAM at {c['cam']} median "
                  f"{c['latency_ms']['median']:.1f} ms", flush=True)

    effcam_macs = results[threads[0]]["effcam"][0]["multiply_adds"]
    ort_macs = onnx_info["multiply_adds"]
    ort_version = results[threads[0]]["ort"][0]["version"]
    mib = 1 << 20
    summary = {"effcam_macs": effcam_macs, "ort_macs": ort_macs, "node_baseline_mib": node_baseline / mib,
               "effcam_classes": results[threads[0]]["effcam"][0]["classes"], "ort_classes": onnx_info["classes"],
               "threads": []}
    for t in threads:
        row = {"threads": t}
        for name, macs in (("effcam", effcam_macs), ("ort", ort_macs)):
            runs = results[t][name]
            median_ms = statistics.median(x["latency_ms"]["median"] for x in runs)
            rss = statistics.median(x["peak_rss_bytes"] for x in runs)
            row[name] = {"median_ms": median_ms, "min_ms": min(x["latency_ms"]["min"] for x in runs),
                         "round_medians_ms": [x["latency_ms"]["median"] for x in runs],
                         "gflops": 2 * macs / (median_ms * 1e6)}
            if name == "ort":
                row[name].update(peak_rss_mib=(rss - node_baseline) / mib, process_rss_mib=rss / mib)
            else:
                row[name].update(peak_rss_mib=rss / mib, peak_fraction=statistics.median(x["peak_fraction"] for x in runs))
        row["latency_ratio"] = row["effcam"]["median_ms"] / row["ort"]["median_ms"]
        cam_runs = results[t]["effcam_cam"]
        row["effcam_cam"] = {"layer": cam_runs[0]["cam"],
                             "median_ms": statistics.median(x["latency_ms"]["median"] for x in cam_runs),
                             "min_ms": min(x["latency_ms"]["min"] for x in cam_runs),
                             "round_medians_ms": [x["latency_ms"]["median"] for x in cam_runs],
                             "peak_rss_mib": statistics.median(x["peak_rss_bytes"] for x in cam_runs) / mib}
        # Each round's Grad-CAM run follows its forward run: the paired ratios show the spread under drift.
        row["cam_round_ratios"] = [c["latency_ms"]["median"] / e["latency_ms"]["median"]
                                   for c, e in zip(cam_runs, results[t]["effcam"])]
        row["cam_ratio"] = row["effcam_cam"]["median_ms"] / row["effcam"]["median_ms"]
        summary["threads"].append(row)

    print()
    for row in summary["threads"]:
        e, o = row["effcam"], row["ort"]
        print(f"{row['threads']} thread(s): effcam {e['median_ms']:.1f} ms ({e['peak_fraction']:.0%} of the FMA peak), "
              f"ORT {o['median_ms']:.1f} ms, effcam / ORT = {row['latency_ratio']:.2f}; "
              f"peak RSS effcam {e['peak_rss_mib']:.1f} MiB, ORT adds {o['peak_rss_mib']:.1f} MiB")
    for row in summary["threads"]:
        e, c, ratios = row["effcam"], row["effcam_cam"], row["cam_round_ratios"]
        print(f"{row['threads']} thread(s): effcam forward {e['median_ms']:.1f} ms, forward + Grad-CAM at {c['layer']} "
              f"{c['median_ms']:.1f} ms, ratio {row['cam_ratio']:.3f} (per round {min(ratios):.3f} to "
              f"{max(ratios):.3f}); peak RSS with Grad-CAM {c['peak_rss_mib']:.1f} MiB")
    table = markdown(summary, ort_version)
    print()
    print(table)
    with open(os.path.join(work, "side_by_side.json"), "w") as f:
        json.dump({"summary": summary, "runs": {str(t): results[t] for t in threads}}, f, indent=1)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(table)


if __name__ == "__main__":
    main()
