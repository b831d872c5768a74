#!/usr/bin/python3
"""Memory of a Python process using effcam, by the kernel's figures (/proc/self/status). Each mode runs in a fresh
interpreter; prints one JSON line.

  memory.py baseline                      python3 with numpy and PIL.Image imported: VmHWM
  memory.py peak MODEL IMAGE              + import effcam, load MODEL, predict + Grad-CAM + overlay (PIL.Image): VmHWM
  memory.py flat MODEL IMAGE [--calls N] [--warmup W]
                                          N explain calls (overlay PNG) after W: VmRSS after the warm-up and its
                                          largest value after each later call

The bar (tests/python/test_memory.py, README): peak - baseline - the model file's size <= 24 MiB; flat: the largest
RSS minus the RSS after the warm-up <= 1 MiB over 1,000 calls.
"""
import argparse
import json
import os


def status(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=("baseline", "peak", "flat"))
    parser.add_argument("model", nargs="?")
    parser.add_argument("image", nargs="?")
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=20)
    args = parser.parse_args()
    import numpy  # noqa: F401 - the baseline every mode shares
    import PIL.Image  # noqa: F401
    if args.mode == "baseline":
        print(json.dumps({"peak_rss_bytes": status("VmHWM")}))
        return
    import effcam
    model = effcam.Model(args.model)
    if args.mode == "peak":
        prediction = model.predict(args.image)
        explanation = model.explain(args.image)
        overlay = explanation.overlay()
        print(json.dumps({"peak_rss_bytes": status("VmHWM"), "model_file_bytes": os.path.getsize(args.model),
                          "label": prediction.label, "overlay_size": overlay.size}))
        return
    for _ in range(args.warmup):
        model.explain(args.image).overlay_png()
    # VmRSS also counts the mapped weights' pages, which the kernel may drop and fault back in under memory
    # pressure; RssAnon is the process's own memory, where a leak would show.
    after_warmup = largest = status("VmRSS")
    anon_after_warmup = largest_anon = status("RssAnon")
    for _ in range(args.calls):
        model.explain(args.image).overlay_png()
        largest = max(largest, status("VmRSS"))
        largest_anon = max(largest_anon, status("RssAnon"))
    print(json.dumps({"rss_after_warmup_bytes": after_warmup, "largest_rss_bytes": largest,
                      "growth_bytes": largest - after_warmup, "anon_growth_bytes": largest_anon - anon_after_warmup,
                      "calls": args.calls, "warmup": args.warmup}))


if __name__ == "__main__":
    main()
