"""examples/c and examples/cpp build against the INSTALLED effcam (cmake --install into a fresh prefix, then
find_package for both, and pkg-config for the C one) and give effcam-predict's answer: the same top-1 class and
probability, the same CAM layer and size, and the same overlay PNG byte for byte."""
import filecmp
import json
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "e2e"))
import effcam_testlib as t  # noqa: E402


def main():
    model, _ = t.convert(os.path.join(t.FOOD101, "food101_effv2b0.keras"), "examples/food101.effcam", "fp16",
                         os.path.join(t.FOOD101, "labels.txt"))
    image = os.path.join(t.FOOD101, "samples", "bibimbap.png")
    work = tempfile.mkdtemp(prefix="effcam-examples-")
    try:
        prefix = os.path.join(work, "prefix")
        t.run(["cmake", "--install", t.BINARY_DIR, "--prefix", prefix])
        installed = sorted(os.path.relpath(os.path.join(d, f), prefix) for d, _, fs in os.walk(prefix) for f in fs)
        t.info("installed: " + ", ".join(installed))
        t.check(any(f.startswith("include/effcam/effcam.h") for f in installed), "headers installed")
        t.check(any("libeffcam.so.1" in f for f in installed), "libeffcam.so.1 (the SONAME) installed")
        build = os.path.join(work, "build")
        t.run(["cmake", "-S", os.path.join(t.SOURCE_DIR, "examples"), "-B", build, "-G", "Ninja",
               f"-DCMAKE_PREFIX_PATH={prefix}"])
        t.run(["cmake", "--build", build])
        libdir = next(os.path.dirname(os.path.join(prefix, f)) for f in installed if "libeffcam.so" in f)
        env = dict(os.environ, PKG_CONFIG_PATH=os.path.join(libdir, "pkgconfig"))
        flags = t.run(["pkg-config", "--cflags", "--libs", "effcam"], env=env).stdout.split()
        pkg_c = os.path.join(work, "predict_c_pkgconfig")
        t.run(["cc", "-std=c99", "-Wall", "-Werror", os.path.join(t.SOURCE_DIR, "examples", "c", "predict.c"),
               "-o", pkg_c] + flags)

        want_overlay = os.path.join(work, "tool.png")
        tool = t.run([t.PREDICT, "--model", model, image, "--json", "--cam", "gradcam", "--overlay", want_overlay])
        record = json.loads(tool.stdout)
        top = record["top_k"][0]
        want = f"{top['label']} {top['probability']:.4f} cam {record['cam']['layer']} " \
               f"{record['cam']['height']}x{record['cam']['width']}"
        run_env = dict(os.environ, LD_LIBRARY_PATH=libdir)
        for name, program in (("C (find_package)", os.path.join(build, "predict_c")),
                              ("C++ (find_package)", os.path.join(build, "predict_cpp")),
                              ("C (pkg-config)", pkg_c)):
            overlay = os.path.join(work, os.path.basename(program) + ".png")
            got = t.run([program, model, image, overlay], env=run_env).stdout.strip()
            t.check(got == want, f"{name}: '{got}' == effcam-predict's '{want}'")
            t.check(filecmp.cmp(overlay, want_overlay, shallow=False), f"{name}: overlay equals effcam-predict's")
            linked = t.run(["ldd", program], env=run_env).stdout
            t.check(libdir in linked, f"{name}: runs on the installed libeffcam.so")
        bad = t.run([os.path.join(build, "predict_c"), model, t.REFERENCE, os.path.join(work, "x.png")],
                    expect_ok=False, env=run_env)
        t.check(bad.returncode == 1 and "predict: image" in bad.stderr, f"C example on a non-image: {bad.stderr}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    t.finish()


if __name__ == "__main__":
    main()
