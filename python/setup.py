"""Builds effcam._effcam with the project's CMake (the parent folder) and puts it in the package.

Environment:
  EFFCAM_BUILD_DIR  an existing CMake build tree of the project to build the module in (e.g. ../build); default: a
                    fresh Release tree in setuptools' build_temp, configured without tests
  EFFCAM_CMAKE_ARGS extra arguments for the configure step
"""
import os
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
                         "-DCMAKE_BUILD_TYPE=Release", "-DEFFCAM_TESTS=OFF", "-DEFFCAM_PYTHON=ON",
                         f"-DPython_EXECUTABLE={sys.executable}"]
            subprocess.run(configure + shlex.split(os.environ.get("EFFCAM_CMAKE_ARGS", "")), check=True)
        jobs = str(self.parallel or os.cpu_count() or 1)
        subprocess.run(["cmake", "--build", str(build_dir), "--target", "_effcam", "-j", jobs], check=True)
        built = next((build_dir / "python" / "effcam").glob("_effcam*.so"), None)
        if built is None:
            raise RuntimeError(f"the CMake build in {build_dir} produced no _effcam module")
        target = Path(self.get_ext_fullpath(ext.name))
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(built, target)


setup(ext_modules=[Extension("effcam._effcam", sources=[])], cmdclass={"build_ext": CMakeBuild})
