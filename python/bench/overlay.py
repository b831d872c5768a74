#!/usr/bin/python3
"""Milliseconds of Explanation.overlay(alpha=...) with another alpha than explain()'s, side by side in one run:
  redraw   what the package does: the same map drawn again over the image decoded again (Predictor::render)
  rerun    what it did before: the whole explain() again with that alpha (decode, forward, backward, pictures)
Rounds alternate so that both see the same machine; prints each round's medians and the ratio of the medians.

  overlay.py MODEL IMAGE [--alpha A] [--rounds R] [--calls N] [--size model|original]
"""
import argparse
import statistics
import time

import effcam


def milliseconds(call, count):
    times = []
    for _ in range(count):
        began = time.perf_counter()
        call()
        times.append((time.perf_counter() - began) * 1000)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model")
    parser.add_argument("image")
    parser.add_argument("--alpha", type=float, default=0.6)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--calls", type=int, default=10)
    parser.add_argument("--size", default="model")
    args = parser.parse_args()
    with open(args.image, "rb") as f:
        image = f.read()
    with effcam.Model(args.model) as model:
        explanation = model.explain(image, overlay=False)
        redraw = lambda: explanation.overlay(alpha=args.alpha, size=args.size)  # noqa: E731
        rerun = lambda: model.explain(image, class_index=explanation.class_index, alpha=args.alpha,  # noqa: E731
                                      size=args.size).overlay()
        assert redraw().tobytes() == rerun().tobytes()  # the same picture either way
        redraws, reruns = [], []
        for round_ in range(args.rounds):
            redraws.append(milliseconds(redraw, args.calls))
            reruns.append(milliseconds(rerun, args.calls))
            print(f"round {round_ + 1}: redraw {redraws[-1]:.2f} ms, rerun {reruns[-1]:.2f} ms")
        redraw_ms, rerun_ms = statistics.median(redraws), statistics.median(reruns)
        print(f"overlay(alpha={args.alpha}, size={args.size!r}): redraw {redraw_ms:.2f} ms, rerun {rerun_ms:.2f} ms "
              f"({rerun_ms / redraw_ms:.1f}x faster)")


if __name__ == "__main__":
    main()
