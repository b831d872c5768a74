"""effcam-convert on every file users are likely to bring: what converts, what is refused and how, and file sizes.

- The generated EfficientNetV2 models (S nested Functional, S nested Sequential, S as .h5, B0 .keras) and the real
  Food-101 model convert, and their fp16 files are within 3% of 2 bytes per Keras parameter.
- Each of the 12 genuine files in ../shared/fixtures/keras-real converts or fails with a one-line message naming
  the layer and class that is not supported (pinned below), never a crash.
"""
import os
import re
import sys

sys.path.insert(0, os.path.dirname(__file__))
import effcam_testlib as t  # noqa: E402

# Genuine files: None = converts; otherwise substrings the one-line error must contain.
REAL_FILES = {
    "autoencoder_keras3.3.3.keras": ["'conv2d' (Conv2D)", "LeakyReLU"],
    "autoencoder_keras3.8.keras": ["'dec_up1' (UpSampling2D)", "not supported"],
    "autoencoder_keras3.8.h5": ["'dec_up1' (UpSampling2D)", "not supported"],
    "emotion_keras3.5_sequential.keras": None,
    "mosquitoes_keras2.14.keras": None,
    "mosquitoes_keras2.15.keras": None,
    "mosquitoes_keras2.15.h5": None,
    "siamese_nested_keras3.5.keras": ["several inputs"],
    "siamese_nested_keras2.8.h5": ["several inputs"],
    "vww96_mobilenetv1_keras2.4.h5": None,
    "mobilenetv2_0.35_128_keras2.8.h5": None,
    "st_efficientnet_lc_keras2.8.h5": ["(Lambda)", "not supported"],
}


def summary_value(summary, pattern):
    match = re.search(pattern, summary)
    return match.group(1) if match else None


def check_generated():
    expected = {  # file -> (Keras layers, input, classes)
        "effv2s_functional.keras": ("516", "300x300x3", "7"),
        "effv2s_sequential.keras": ("516", "300x300x3", "7"),
        "effv2s_functional.h5": ("516", "300x300x3", "7"),
        "effv2b0.keras": ("273", "224x224x3", "1000"),
    }
    for name, (layers, size, classes) in expected.items():
        for dtype, per_param in (("fp16", 2.0), ("fp32", 4.0)):
            _, summary = t.convert(t.keras_model(name), f"convert_{name.replace('.', '_')}_{dtype}.effcam", dtype)
            ratio = float(summary_value(summary, r"([0-9.]+) bytes per Keras parameter"))
            t.check(abs(ratio / per_param - 1) <= 0.03, f"{name} {dtype}: {ratio:.3f} bytes per parameter "
                                                        f"(within 3% of {per_param})")
            t.check(summary_value(summary, r"(\d+) Keras layers") == layers, f"{name}: {layers} Keras layers read")
            t.check(summary_value(summary, r"input\s+(\S+)") == size, f"{name}: input {size}")
            t.check(summary_value(summary, r"classes\s+(\d+)") == classes, f"{name}: {classes} classes")


def check_food101():
    folder = t.FOOD101
    _, summary = t.convert(os.path.join(folder, "food101_effv2b0.keras"), "convert_food101_fp16.effcam",
                           labels=os.path.join(folder, "labels.txt"))
    ratio = float(summary_value(summary, r"([0-9.]+) bytes per Keras parameter"))
    t.check(abs(ratio / 2 - 1) <= 0.03, f"food101 fp16: {ratio:.3f} bytes per parameter (within 3% of 2)")
    t.check("(labelled)" in summary and summary_value(summary, r"classes\s+(\d+)") == "101", "food101: 101 labels")


def check_real_files():
    folder = t.shared_path("fixtures/keras-real")
    present = sorted(f for f in os.listdir(folder) if f.endswith((".keras", ".h5")))
    t.check(present == sorted(REAL_FILES), f"the 12 genuine files are all pinned ({len(present)} present)")
    os.makedirs(os.path.join(t.TESTDATA, "effcam"), exist_ok=True)
    for name, needles in REAL_FILES.items():
        out = os.path.join(t.TESTDATA, "effcam", f"real_{name}.effcam")
        result = t.run([t.CONVERT, os.path.join(folder, name), out], expect_ok=False)
        if needles is None:
            t.check(result.returncode == 0, f"{name}: converts ({result.stderr.strip()})")
            continue
        lines = result.stderr.strip().splitlines()
        t.check(result.returncode == 1, f"{name}: refused with exit code 1 (got {result.returncode})")
        t.check(len(lines) == 1 and all(n in lines[0] for n in needles),
                f"{name}: one-line error naming {needles}: {lines}")
        t.check(not os.path.exists(out), f"{name}: no output file left behind")


def main():
    check_real_files()
    check_food101()
    check_generated()
    t.finish()


if __name__ == "__main__":
    main()
