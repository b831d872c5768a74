#!/usr/bin/python3
"""Cold start of effcam-predict against its warm per-image cost: EfficientNetV2-S fp16 at 300x300, 1 thread.

The issue's bar: a fresh `effcam-predict --threads 1 --model MODEL IMAGE` process (exec and dynamic loading, mmap
and validation of the model, the plan, decoding, one forward pass, exit) takes at most 1.3 x what one image costs a
running process (decode + preprocess + forward).

  cold  the wall time of a fresh process, from spawn to reaped, N per round (the model file in the page cache,
        as a server restart sees it); also its CPU time, page faults and peak RSS from wait4's rusage
  warm  one process given the same image K times (--json): per image decode + preprocess + forward from its
        timing_ms, the first image left out (it is the cold one); median over the images

Rounds alternate which of the two runs first, so both see the same machine conditions; the figures are medians
over the rounds of each round's median. The very first process is reported apart ("first run"). On a machine
others are using, wall times include waiting for a core; the CPU-time ratio (cold CPU / the CPU each extra image
adds to the warm process) shows the same thing without the waiting.

The model is the one bench/side_by_side.py uses (BUILD/bench-data/effv2s_300_fp16.effcam, made once from the
generated Keras model). The default image is the bundled Food-101 bibimbap photo resized to the model's 300x300
(PIL Lanczos) and stored as a JPEG (quality 90) in BUILD/bench-data; --image takes any other.

usage: /usr/bin/python3 bench/cold_start.py [--rounds R] [--runs N] [--images K] [--image FILE]
                                            [--build DIR] [--keras FILE]
"""
import argparse
import json
import os
import statistics
import subprocess
import time

from PIL import Image

from benchlib import KERAS_NAME, ROOT, die, effcam_model, run, say, stale, work_dir

BAR = 1.3
PHOTO = os.path.join(ROOT, "models", "food101-effv2b0", "samples", "bibimbap.png")
MIB = 1 << 20


def default_image(work):
    path = os.path.join(work, "bibimbap_300.jpg")
    if stale(path, PHOTO):
        say(f"writing {path} ({PHOTO} resized to 300x300)")
        Image.open(PHOTO).convert("RGB").resize((300, 300), Image.LANCZOS).save(path, quality=90)
    return path


def cold_run(predict, model, image):
    """One fresh process: wall ms from spawn to reaped, CPU ms, page faults and peak RSS (wait4's rusage)."""
    start = time.perf_counter()
    process = subprocess.Popen([predict, "--threads", "1", "--model", model, image],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    wall_ms = (time.perf_counter() - start) * 1e3
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        die(f"{predict} {image} exited {process.returncode}: {process.stderr.read().decode().strip()}")
    process.stderr.close()
    return {"wall_ms": wall_ms, "cpu_ms": (usage.ru_utime + usage.ru_stime) * 1e3, "minflt": usage.ru_minflt,
            "majflt": usage.ru_majflt, "peak_rss_bytes": usage.ru_maxrss * 1024}


def warm_run(predict, model, image, count):
    """One process given the image `count` times: per-image decode + preprocess + forward ms of images 2..count,
    and the process's CPU ms."""
    start = os.times()
    lines = run([predict, "--threads", "1", "--json", "--model", model] + [image] * count).splitlines()
    end = os.times()
    timings = [json.loads(line)["timing_ms"] for line in lines]
    if len(timings) != count:
        die(f"{predict} printed {len(timings)} results for {count} images")
    per_image = [t["decode"] + t["preprocess"] + t["forward"] for t in timings[1:]]
    return {"per_image_ms": per_image, "decode_ms": [t["decode"] for t in timings[1:]],
            "forward_ms": [t["forward"] for t in timings[1:]],
            "cpu_ms": (end.children_user - start.children_user + end.children_system - start.children_system) * 1e3}


def main():
    parser = argparse.ArgumentParser(description="effcam-predict cold start vs warm per-image cost")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--runs", type=int, default=5, help="fresh processes per round")
    parser.add_argument("--images", type=int, default=11, help="images given to the warm process per round")
    parser.add_argument("--image", help="the image (default: the Food-101 bibimbap photo as a 300x300 JPEG)")
    parser.add_argument("--build", default=os.path.join(ROOT, "build"), help="the build directory (scripts/build.sh)")
    parser.add_argument("--keras", help=f"the Keras EfficientNetV2-S (default: the generated {KERAS_NAME})")
    args = parser.parse_args()
    if args.rounds < 1 or args.runs < 1 or args.images < 2:
        die("--rounds and --runs want positive numbers, --images at least 2 (the first one is the cold one)")

    build = os.path.abspath(args.build)
    predict = os.path.join(build, "apps", "effcam-predict")
    work = work_dir(build, ["apps/effcam-predict", "apps/effcam-convert"])
    model = effcam_model(build, work, args.keras)
    image = os.path.abspath(args.image) if args.image else default_image(work)
    try:
        with Image.open(image) as im:
            image_text = f"{im.width}x{im.height} {im.format}, {os.path.getsize(image):,} bytes"
    except OSError as e:
        die(f"{image}: not a readable image ({e})")
    print(f"model  {model} ({os.path.getsize(model):,} bytes)\nimage  {image} ({image_text})\n1 thread; "
          f"{args.rounds} rounds of {args.runs} fresh processes and one process given the image {args.images} times",
          flush=True)

    first = cold_run(predict, model, image)
    print(f"first run: {first['wall_ms']:.1f} ms wall, {first['cpu_ms']:.1f} ms CPU, {first['minflt']} minor and "
          f"{first['majflt']} major page faults, peak RSS {first['peak_rss_bytes'] / MIB:.1f} MiB", flush=True)
    rounds = []
    for r in range(1, args.rounds + 1):
        measured = {}
        for what in ("cold", "warm") if r % 2 else ("warm", "cold"):
            measured[what] = ([cold_run(predict, model, image) for _ in range(args.runs)] if what == "cold"
                              else warm_run(predict, model, image, args.images))
        cold, warm = measured["cold"], measured["warm"]
        row = {"cold_ms": statistics.median(c["wall_ms"] for c in cold),
               "cold_cpu_ms": statistics.median(c["cpu_ms"] for c in cold),
               "warm_ms": statistics.median(warm["per_image_ms"]),
               "warm_decode_ms": statistics.median(warm["decode_ms"]),
               "warm_forward_ms": statistics.median(warm["forward_ms"]),
               "minflt": statistics.median(c["minflt"] for c in cold),
               "majflt": max(c["majflt"] for c in cold),
               "peak_rss_bytes": max(c["peak_rss_bytes"] for c in cold),
               "cold_runs": cold, "warm_run": warm}
        # What each image after the first adds to the warm process, against a whole one-image process.
        row["warm_cpu_ms"] = (warm["cpu_ms"] - row["cold_cpu_ms"]) / (args.images - 1)
        row["ratio"] = row["cold_ms"] / row["warm_ms"]
        rounds.append(row)
        print(f"round {r}/{args.rounds}: cold {row['cold_ms']:.1f} ms (CPU {row['cold_cpu_ms']:.1f}), warm decode + "
              f"forward {row['warm_ms']:.1f} ms (CPU {row['warm_cpu_ms']:.1f}), ratio {row['ratio']:.2f}", flush=True)

    cold_ms = statistics.median(r["cold_ms"] for r in rounds)
    warm_ms = statistics.median(r["warm_ms"] for r in rounds)
    cold_cpu = statistics.median(r["cold_cpu_ms"] for r in rounds)
    warm_cpu = statistics.median(r["warm_cpu_ms"] for r in rounds)
    summary = {"cold_ms": cold_ms, "warm_ms": warm_ms, "ratio": cold_ms / warm_ms,
               "warm_decode_ms": statistics.median(r["warm_decode_ms"] for r in rounds),
               "warm_forward_ms": statistics.median(r["warm_forward_ms"] for r in rounds),
               "cold_cpu_ms": cold_cpu, "warm_cpu_ms": warm_cpu, "cpu_ratio": cold_cpu / warm_cpu,
               "round_ratios": [r["ratio"] for r in rounds], "minflt": statistics.median(r["minflt"] for r in rounds),
               "majflt": max(r["majflt"] for r in rounds),
               "peak_rss_bytes": max(r["peak_rss_bytes"] for r in rounds), "first_run": first}
    print()
    print(f"cold start   {cold_ms:.1f} ms wall (fresh process, median of the rounds' medians), first run "
          f"{first['wall_ms']:.1f} ms")
    print(f"warm image   {warm_ms:.1f} ms (decode {summary['warm_decode_ms']:.1f} + forward "
          f"{summary['warm_forward_ms']:.1f} + preprocess)")
    print(f"ratio        {summary['ratio']:.2f} (rounds {min(summary['round_ratios']):.2f} to "
          f"{max(summary['round_ratios']):.2f}); bar {BAR}: {'met' if summary['ratio'] <= BAR else 'NOT met'}")
    print(f"CPU time     cold {cold_cpu:.1f} ms, warm image {warm_cpu:.1f} ms, ratio {summary['cpu_ratio']:.2f}")
    print(f"cold process {summary['minflt']:.0f} minor / {summary['majflt']} major page faults, peak RSS "
          f"{summary['peak_rss_bytes'] / MIB:.1f} MiB")
    with open(os.path.join(work, "cold_start.json"), "w") as f:
        json.dump({"model": model, "image": image, "summary": summary, "rounds": rounds}, f, indent=1)


if __name__ == "__main__":
    main()
