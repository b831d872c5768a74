"""Peak-memory regression tests: the kernel's figures (VmHWM / VmRSS) of real effcam-predict processes.

usage: check_memory.py CASE   with CASE one of
  peak   one EfficientNetV2-S fp16 predict at 300x300 (1 thread): peak RSS <= the budget, and the planned arena
         within 1.15x of the liveness lower bound
  flat   100 images in one process: RSS after the last image within 1 MiB of RSS after the first
"""
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
import effcam_testlib as t  # noqa: E402

MIB = 1 << 20
PEAK_BUDGET = 64 * MIB      # the product bar for one predict on EfficientNetV2-S fp16 at 300x300
ARENA_OVER_BOUND = 1.15     # planner quality: arena / liveness lower bound
FLAT_TOLERANCE = 1 * MIB    # RSS growth allowed over 100 images


def s_model():
    model, _ = t.convert(t.keras_model("effv2s_functional.keras"), "memory_effv2s_fp16.effcam", "fp16")
    return model


def peak():
    image = t.test_images(300, 300, 1)
    result = t.predict(s_model(), image)[0]
    rss = result["peak_rss_bytes"]
    arena, bound = result["arena_bytes"], result["arena_lower_bound_bytes"]
    print(f"  peak RSS {rss} bytes ({rss / MIB:.1f} MiB), arena {arena} bytes, lower bound {bound} bytes")
    t.check(rss > 40 * MIB, f"peak RSS {rss / MIB:.1f} MiB includes the ~39 MiB of weights (the figure is real)")
    t.check(rss <= PEAK_BUDGET, f"peak RSS {rss / MIB:.1f} MiB <= {PEAK_BUDGET / MIB:.0f} MiB")
    t.check(arena <= ARENA_OVER_BOUND * bound, f"arena {arena} <= {ARENA_OVER_BOUND} x lower bound {bound}")


def flat():
    images = t.test_images(300, 300, 4)
    results = t.predict(s_model(), [images[i % len(images)] for i in range(100)])
    t.check(len(results) == 100, f"{len(results)} results for 100 images")
    first, last = results[0]["rss_bytes"], results[-1]["rss_bytes"]
    print(f"  RSS after image 1: {first} bytes, after image 100: {last} bytes")
    t.check(abs(last - first) <= FLAT_TOLERANCE, f"RSS change over 100 images {last - first} bytes <= 1 MiB")


def main():
    case = sys.argv[1] if len(sys.argv) > 1 else ""
    if case == "peak":
        peak()
    elif case == "flat":
        flat()
    else:
        print(__doc__)
        sys.exit(2)
    t.finish()


if __name__ == "__main__":
    main()
