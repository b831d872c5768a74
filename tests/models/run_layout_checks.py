#!/usr/bin/python3
"""Runs check_layout.py on every generated model against the genuine Keras files of its kind, and checks
that the three EfficientNetV2-S files carry identical weights.

Usage: /usr/bin/python3 run_layout_checks.py GENERATED_DIR SHARED_DIR
Exit 0 when all pass, 1 on a mismatch, 77 (ctest SKIP_RETURN_CODE) when SHARED_DIR or a model is absent.
"""

import io
import sys
import zipfile
from pathlib import Path

import h5py
import numpy as np

import check_layout

SKIP = 77
REFERENCES = {
    "effv2b0.keras": ["models/food101-effv2b0/food101_effv2b0.keras"],
    "effv2s_functional.keras": ["models/food101-effv2b0/food101_effv2b0.keras",
                                "fixtures/keras-real/autoencoder_keras3.8.keras",
                                "fixtures/keras-real/siamese_nested_keras3.5.keras"],
    "effv2s_sequential.keras": ["models/food101-effv2b0/food101_effv2b0.keras",
                                "fixtures/keras-real/emotion_keras3.5_sequential.keras"],
    "effv2s_functional.h5": ["fixtures/keras-real/mosquitoes_keras2.15.h5",
                             "fixtures/keras-real/siamese_nested_keras2.8.h5",
                             "fixtures/keras-real/st_efficientnet_lc_keras2.8.h5",
                             "fixtures/keras-real/mobilenetv2_0.35_128_keras2.8.h5"],
}


def keras3_kernels(path):
    """{layer name: first variable} of every weighted layer in a .keras archive."""
    with zipfile.ZipFile(path) as zf, h5py.File(io.BytesIO(zf.read("model.weights.h5")), "r") as h5:
        found = {}
        h5.visititems(lambda name, obj: found.__setitem__(obj.attrs["name"], obj["0"][()])
                      if name.endswith("vars") and "0" in obj else None)
        return found


def legacy_kernels(path):
    with h5py.File(path, "r") as f:
        found = {}
        for group in f["model_weights"].values():
            for name in group.attrs["weight_names"]:
                name = name.decode() if isinstance(name, bytes) else name
                layer, var = name.split("/")
                if var in ("kernel:0", "depthwise_kernel:0", "gamma:0") and layer not in found:
                    found[layer] = group[name][()]
        return found


def same_weights(generated):
    functional = keras3_kernels(generated / "effv2s_functional.keras")
    others = {"effv2s_sequential.keras": keras3_kernels(generated / "effv2s_sequential.keras"),
              "effv2s_functional.h5": legacy_kernels(generated / "effv2s_functional.h5")}
    ok = True
    for name, kernels in others.items():
        common = set(functional) & set(kernels)
        equal = len(common) > 250 and all(np.array_equal(functional[k], kernels[k]) for k in common)
        print(f"{name}: {len(common)} layers compared with effv2s_functional.keras -> "
              f"{'identical' if equal else 'DIFFERENT'}")
        ok &= equal
    return ok


def main(argv):
    if len(argv) != 3:
        print(__doc__)
        return 2
    generated, shared = Path(argv[1]), Path(argv[2])
    if not shared.is_dir():
        print(f"SKIP: {shared} is absent (shared/ not beside the checkout)")
        return SKIP
    missing = [name for name in REFERENCES if not (generated / name).exists()]
    if missing:
        print(f"SKIP: generated models {missing} are absent from {generated}")
        return SKIP
    failures = 0
    for name, refs in REFERENCES.items():
        failures += check_layout.main(["check_layout.py", str(generated / name), *(str(shared / r) for r in refs)])
    failures += 0 if same_weights(generated) else 1
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
