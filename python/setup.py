"""Builds effcam._effcam and effcam._convert with the project's CMake (the parent folder) into the package.

Environment:
  EFFCAM_BUILD_DIR  an existing CMake build tree of the project to build the module in (e.g. ../build); default: a
                    fresh Release tree in setuptools' build_temp, configured without tests
  EFFCAM_CMAKE_ARGS extra arguments for the configure step
"""
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

SOURCE_DIR = Path(__file__).resolve().parent.parent  # the project's root (python/..)


class CMakeBuild(build_ext):
    def build_extension(self, ext):
        build_dir = Path(os.environ.get("EFFCAM_BUILD_DIR") or Path(self.build_temp).resolve() / "cmake")
        if not (build_dir / "CMakeCache.txt").exists():
            build_dir.mkdir(parents=True, exist_ok=True)
            generator = ["-G", "Ninja"] if shutil.which("ninja") else []
            configure = ["cmake", "-S", str(SOURCE_DIR), "-B", str(build_dir), *generator,
                         "-DCMAKE_BUILD_TYPE=Release", "-DEFFCAM_TESTS=OFF", "-DEFFCAM_PYTHON_PACKAGE=ON",
                         f"-DPython_EXECUTABLE={sys.executable}"]
            subprocess.run(configure + shlex.split(os.environ.get("EFFCAM_CMAKE_ARGS", "")), check=True)
        jobs = str(self.parallel or os.cpu_count() or 1)
        target = ext.name.split(".")[-1]  # the CMake target is the module's name
        subprocess.run(["cmake", "--build", str(build_dir), "--target", target, "-j", jobs], check=True)
        built = next((build_dir / "python" / "effcam").glob(f"{target}.*.so"), None)
        if built is None:
            raise RuntimeError(f"the CMake build in {build_dir} produced no {target} module")
        installed = Path(self.get_ext_fullpath(ext.name))
        installed.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(built, installed)


def project_version():
    """project(effcam VERSION x.y.z ...) in the top CMakeLists.txt: one version for the library and the package."""
    text = (SOURCE_DIR / "CMakeLists.txt").read_text()
    return re.search(r"project\(effcam\s+VERSION\s+([0-9.]+)", text).group(1)


setup(version=project_version(),
      ext_modules=[Extension("effcam._effcam", sources=[]), Extension("effcam._convert", sources=[])],
      cmdclass={"build_ext": CMakeBuild})
