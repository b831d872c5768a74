"""libeffcam.so exports the API alone: every dynamic symbol it defines is a C function effcam_* or lives in the C++
namespace effcam:: (functions, and the type info / vtables of its classes); its SONAME carries the API version."""
import re
import subprocess
import sys

library = sys.argv[1]
symbols = subprocess.run(["nm", "-D", "--defined-only", library], capture_output=True, text=True, check=True).stdout
names = [line.split()[-1] for line in symbols.splitlines() if line.strip()]
demangled = subprocess.run(["c++filt"], input="\n".join(names), capture_output=True, text=True, check=True).stdout
allowed = re.compile(r"^(effcam_\w+|(typeinfo for |typeinfo name for |vtable for )?effcam::.*)$")
stray = [name for name in demangled.splitlines() if not allowed.match(name)]
c_api = [n for n in names if n.startswith("effcam_")]
header = open(__file__.replace("tests/api/check_symbols.py", "include/effcam/effcam.h")).read()
declared = set(re.findall(r"EFFCAM_C_API [^;(]*?\b(effcam_\w+)\(", header))
soname = subprocess.run(["objdump", "-p", library], capture_output=True, text=True, check=True).stdout
version = re.search(r"#define EFFCAM_API_VERSION (\d+)", header).group(1)
failures = []
if stray:
    failures.append(f"{len(stray)} symbols outside the API, e.g. {stray[:5]}")
if set(c_api) != declared:
    failures.append(f"C symbols differ from effcam.h: missing {sorted(declared - set(c_api))}, "
                    f"extra {sorted(set(c_api) - declared)}")
if f"SONAME               libeffcam.so.{version}" not in soname:
    failures.append(f"SONAME is not libeffcam.so.{version}")
print(f"{len(names)} exported symbols: {len(c_api)} C functions (effcam.h declares {len(declared)}), "
      f"{len(names) - len(c_api)} in namespace effcam")
for failure in failures:
    print("FAIL " + failure)
print(f"{3 - len(failures)} passed, {len(failures)} failed")
sys.exit(1 if failures else 0)
