"""The memory bars of a Python process (plain build only: sanitizers' shadow memory means nothing here). Each
figure comes from a fresh interpreter running python/bench/memory.py; README has the figures and the full run."""
import json
import os
import subprocess
import sys

import pytest

from conftest import converted, effcam, images, t, SANITIZED

pytestmark = pytest.mark.skipif(SANITIZED, reason="memory bars are pinned in the plain build")
PROBE = os.path.join(t.SOURCE_DIR, "python", "bench", "memory.py")
MiB = 1 << 20


def _probe(*arguments):
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(effcam.__file__)))
    run = subprocess.run([sys.executable, PROBE] + list(arguments), capture_output=True, text=True, env=env)
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


def test_peak_of_a_python_process_explaining_with_effv2s():
    model = converted("s")
    (image,) = images(300, 300, 1)
    baseline = _probe("baseline")["peak_rss_bytes"]
    peak = _probe("peak", model, image)
    above = peak["peak_rss_bytes"] - baseline - peak["model_file_bytes"]
    print(f"peak {peak['peak_rss_bytes']} baseline {baseline} model file {peak['model_file_bytes']}: "
          f"{above / MiB:.1f} MiB above (bar 24 MiB)")
    assert above <= 24 * MiB
    assert peak["overlay_size"] == [300, 300]


def test_rss_stays_flat_over_explain_calls():
    model = converted("food101")
    (image,) = images(300, 300, 1)
    flat = _probe("flat", model, image, "--calls", "60", "--warmup", "20")
    print(f"RSS growth over {flat['calls']} explain calls after {flat['warmup']}: {flat['growth_bytes']} bytes "
          f"({flat['anon_growth_bytes']} anonymous)")
    assert flat["growth_bytes"] <= MiB
