"""The decoding options (EXIF orientation, fast JPEG decode, the model's input picture, the image limits) do in the
package what effcam-predict's --exif-orientation, --decode, --save-input and --max-image-mib do, bit for bit through
the real tool, and bad values raise ValueError."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import converted, effcam, images, t, tool_records, FOOD101_SAMPLES, SANITIZED

VOLATILE = ("timing_ms", "peak_rss_bytes", "rss_bytes", "arena_bytes", "arena_lower_bound_bytes")
pytestmark = pytest.mark.skipif(SANITIZED, reason="numbers are checked in the plain build (the ASan run checks errors)")


def _answer(record):
    return {key: value for key, value in record.items() if key not in VOLATILE}


@pytest.fixture(scope="module")
def rotated_jpeg(tmp_path_factory):
    """The bibimbap photo as a 720x480 JPEG tagged EXIF orientation 6 (stored on its side): fast decoding scales its
    DCT by 2 for the 224x224 model, and applying the tag turns it to 480x720."""
    path = str(tmp_path_factory.mktemp("decoding") / "bibimbap_exif6.jpg")
    with Image.open(os.path.join(FOOD101_SAMPLES, "bibimbap.png")) as photo:
        exif = Image.Exif()
        exif[0x0112] = 6
        photo.convert("RGB").resize((720, 480), Image.LANCZOS).save(path, quality=90, exif=exif.tobytes())
    return path


OPTIONS = {  # package keywords -> effcam-predict flags
    (("exif_orientation", "ignore"), ("decode", "exact")): [],
    (("exif_orientation", "apply"), ("decode", "exact")): ["--exif-orientation", "apply"],
    (("exif_orientation", "ignore"), ("decode", "fast")): ["--decode", "fast"],
    (("exif_orientation", "apply"), ("decode", "fast")): ["--exif-orientation", "apply", "--decode", "fast"],
}


def test_orientation_and_fast_decode_give_the_tools_numbers(food101, rotated_jpeg, tmp_path):
    answers = {}
    for keywords, flags in OPTIONS.items():
        saved = str(tmp_path / f"input_{len(answers)}.png")
        record = tool_records(converted("food101"), [rotated_jpeg], flags + ["--save-input", saved])[0]
        ours = food101.predict(rotated_jpeg, input_image=True, **dict(keywords))
        assert _answer(ours.to_dict()) == _answer(record)
        with Image.open(saved) as tool_input:
            assert np.array_equal(np.asarray(ours.input_image()), np.asarray(tool_input))
        with open(saved, "rb") as f:
            assert ours.input_png() == f.read()
        answers[keywords] = ours
    # Each option changes what it should, and only that.
    exact, applied, fast, both = answers.values()
    assert (exact.exif_orientation, exact.applied_orientation, exact.jpeg_scale_denominator) == (6, 1, 1)
    assert (applied.exif_orientation, applied.applied_orientation, applied.jpeg_scale_denominator) == (6, 6, 1)
    assert (fast.exif_orientation, fast.applied_orientation, fast.jpeg_scale_denominator) == (6, 1, 2)
    assert (both.applied_orientation, both.jpeg_scale_denominator) == (6, 2)
    assert exact.image_size == fast.image_size == (480, 720) and applied.image_size == both.image_size == (720, 480)
    for other in (applied, fast, both):
        assert not np.array_equal(other.probabilities, exact.probabilities)
        assert not np.array_equal(np.asarray(other.input_image()), np.asarray(exact.input_image()))
    # The input picture is the model's input: its size, in the model's channels.
    assert exact.input_image().size == (224, 224) and exact.input_image().mode == "RGB"


def test_explaining_a_turned_image_draws_the_tools_overlay(food101, rotated_jpeg, tmp_path):
    overlay = str(tmp_path / "overlay.png")
    record = tool_records(converted("food101"), [rotated_jpeg],
                          ["--exif-orientation", "apply", "--decode", "fast", "--cam", "gradcam", "--cam-score",
                           "prob", "--overlay", overlay, "--overlay-size", "original"])[0]
    e = food101.explain(rotated_jpeg, size="original", exif_orientation="apply", decode="fast")
    record["cam"].pop("files")
    ours = e.to_dict()
    ours["cam"].pop("files")
    assert _answer(ours) == _answer(record)
    with open(overlay, "rb") as f:
        assert e.overlay_png() == f.read()
    assert e.overlay().size == (480, 720)  # upright


def test_without_asking_there_is_no_input_picture(food101, bibimbap):
    with pytest.raises(effcam.ValueError, match="input_image=True"):
        food101.predict(bibimbap).input_image()


def test_image_limits_refuse_what_the_tool_refuses(rotated_jpeg):
    path = converted("food101")
    with effcam.Model(path, max_image_pixels=720 * 480) as model:  # just enough
        assert model.predict(rotated_jpeg).image_size == (480, 720)
    with effcam.Model(path, max_image_pixels=720 * 480 - 1) as model:
        with pytest.raises(effcam.ImageError, match="345599"):
            model.predict(rotated_jpeg)
    # A 1 MiB budget: not enough for the streamed decode of an 800-pixel-wide PNG (256 bytes a column + 1 MiB).
    large = images(600, 800, 1)[0]
    tool = t.run([t.PREDICT, "--model", path, "--json", "--max-image-mib", "1", "--stats", large], expect_ok=False)
    assert tool.returncode == 1
    tool_error = json.loads(tool.stdout.splitlines()[0])["error"]
    with effcam.Model(path, max_image_mib=1) as model:
        with pytest.raises(effcam.ImageError) as refused:
            model.predict(large)
        assert str(refused.value) == tool_error
        memory = model.memory
        assert memory["max_image_bytes"] == 1 << 20
        # The bound the tool prints for the same budget.
        assert f"image bytes {memory['image_bytes']} (budget {1 << 20})" in tool.stderr
    with effcam.Model(path) as model:  # the default budget: 24 bytes per pixel of 100 MP + 4 MiB
        assert model.memory["max_image_bytes"] == 24 * 100_000_000 + (4 << 20)
        assert model.memory["image_bytes"] > model.memory["max_image_bytes"]
        assert model.predict(large).image_size == (600, 800)


@pytest.mark.parametrize("keywords", [{"exif_orientation": "yes"}, {"exif_orientation": None}, {"decode": "slow"},
                                      {"decode": True}])
def test_bad_decoding_options_raise_value_error(food101, bibimbap, keywords):
    with pytest.raises(effcam.ValueError):
        food101.predict(bibimbap, **keywords)
    with pytest.raises(effcam.ValueError):
        food101.explain(bibimbap, **keywords)


@pytest.mark.parametrize("keywords", [{"max_image_pixels": 0}, {"max_image_pixels": 100_000_001},
                                      {"max_image_pixels": 1.5}, {"max_image_mib": 0}, {"max_image_mib": -1},
                                      {"max_image_mib": (1 << 20) + 1}, {"max_image_mib": "1"}])
def test_bad_limits_raise_value_error(keywords):
    with pytest.raises(effcam.ValueError):
        effcam.Model(converted("food101"), **keywords)


def test_python_m_effcam_takes_the_tools_decoding_flags(rotated_jpeg, tmp_path):
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(effcam.__file__)))
    flags = ["--exif-orientation", "apply", "--decode", "fast", "--max-image-mib", "64", "--json"]
    ours_input, tool_input = str(tmp_path / "ours_{name}.png"), str(tmp_path / "tool_{name}.png")
    model = converted("food101")
    ours = subprocess.run([sys.executable, "-m", "effcam", "predict", "--model", model, rotated_jpeg, *flags,
                           "--save-input", ours_input], capture_output=True, text=True, env=env)
    tool = t.run([t.PREDICT, "--model", model, rotated_jpeg, *flags, "--save-input", tool_input])
    assert ours.returncode == 0, ours.stderr
    assert _answer(json.loads(ours.stdout)) == _answer(json.loads(tool.stdout))
    assert json.loads(ours.stdout)["input"]["jpeg_scale"] == 2
    stem = os.path.splitext(os.path.basename(rotated_jpeg))[0]
    with open(ours_input.format(name=stem), "rb") as a, open(tool_input.format(name=stem), "rb") as b:
        assert a.read() == b.read()
    bad = subprocess.run([sys.executable, "-m", "effcam", "predict", "--model", model, rotated_jpeg, "--decode",
                          "slow"], capture_output=True, text=True, env=env)
    assert bad.returncode == 1 and bad.stderr.startswith("effcam: decode must be") and len(bad.stderr.splitlines()) == 1
