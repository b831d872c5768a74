#!/usr/bin/python3
"""Images per second of one Python thread against two threads sharing one effcam.Model(sessions=2), side by side:
rounds alternate (1 thread, 2 threads, ...) so that both see the same machine; prints each round and the medians.

  threads.py MODEL IMAGE [--rounds R] [--images N] [--model-threads T]

Each thread predicts the same encoded image (bytes) N times per round, so decode, resize, the forward pass and the
GIL-released parts all count. The bar (README): two threads >= 1.8x one thread's images/s on 2 cores.
"""
import argparse
import statistics
import threading
import time

import effcam


def images_per_second(model, image, threads, count):
    start = threading.Barrier(threads + 1)

    def work():
        start.wait()
        for _ in range(count):
            model.predict(image)

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    start.wait()
    began = time.perf_counter()
    for worker in workers:
        worker.join()
    return threads * count / (time.perf_counter() - began)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("image")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--images", type=int, default=20, help="per thread and round")
    parser.add_argument("--model-threads", type=int, default=1, help="worker threads of each session")
    args = parser.parse_args()
    with open(args.image, "rb") as f:
        image = f.read()
    model = effcam.Model(args.model, threads=args.model_threads, sessions=2)
    for threads in (1, 2):  # warm-up: both sessions made, pages touched
        images_per_second(model, image, threads, 2)
    # What the threads cannot overlap: each call's time outside the library's own (decode to CAM) timing, which
    # includes the GIL-held part (argument handling, result objects) and the wait for a session.
    outside = []
    for _ in range(args.images):
        began = time.perf_counter()
        prediction = model.predict(image)
        wall_ms = (time.perf_counter() - began) * 1000
        outside.append((wall_ms - prediction.timing_ms["total"]) / wall_ms)
    print(f"time outside the library per call: median {100 * statistics.median(outside):.2f}% "
          f"(Amdahl bound for 2 threads: {2 / (1 + statistics.median(outside)):.3f}x)", flush=True)
    one, two = [], []
    for round_index in range(args.rounds):
        one.append(images_per_second(model, image, 1, args.images))
        two.append(images_per_second(model, image, 2, args.images))
        print(f"round {round_index + 1}: 1 thread {one[-1]:.2f} images/s, 2 threads {two[-1]:.2f} images/s, "
              f"{two[-1] / one[-1]:.3f}x", flush=True)
    print(f"median: 1 thread {statistics.median(one):.2f} images/s, 2 threads {statistics.median(two):.2f} images/s, "
          f"ratio {statistics.median(two) / statistics.median(one):.3f}x (per-round ratios "
          f"{min(b / a for a, b in zip(one, two)):.3f}..{max(b / a for a, b in zip(one, two)):.3f})")


if __name__ == "__main__":
    main()
