"""effcam: classify images with Keras EfficientNetV2 models converted to .effcam files, and explain each answer with
Grad-CAM, in a small, known amount of memory.

    import effcam
    model = effcam.Model("skin.effcam")
    explanation = model.explain(image_bytes)          # a path, bytes, a PIL.Image or a numpy uint8 array
    explanation.prediction.top_k                      # [(label, index, probability), ...]
    explanation.overlay_png()                         # the Grad-CAM overlay, PNG bytes

Errors are effcam.Error: FormatError, ImageError, FileError, ValueError (bad arguments), with the one-line messages
of the command-line tools.
"""
import os as _os

from ._errors import Error, FileError, FormatError, ImageError, ValueError  # noqa: A004 - effcam.ValueError
from . import _effcam
from ._model import ClassScore, Explanation, LayerInfo, Model, Prediction, convert

__version__ = _effcam.version()


def set_dispatch(path):
    """Forces the kernel path of the whole process: "avx512", "avx2" or "scalar" (ValueError when this CPU lacks
    it). Call it before predicting. EFFCAM_DISPATCH in the environment does this at import, as for effcam-predict."""
    _effcam.set_dispatch(str(path))


def dispatch():
    """The kernel path predictions run on: "avx512", "avx2" or "scalar"."""
    return _effcam.dispatch()


def available_dispatches():
    """The kernel paths this CPU runs, best first."""
    return _effcam.available_dispatches()


if _os.environ.get("EFFCAM_DISPATCH"):
    set_dispatch(_os.environ["EFFCAM_DISPATCH"])


def __getattr__(name):
    """effcam.ConversionReport, from the converter's module, loaded on first use (effcam.convert loads it too)."""
    if name == "ConversionReport":
        from ._convert import ConversionReport
        return ConversionReport
    raise AttributeError(f"module 'effcam' has no attribute {name!r}")


__all__ = ["ClassScore", "ConversionReport", "Error", "Explanation", "FileError", "FormatError", "ImageError",
           "LayerInfo", "Model", "Prediction", "ValueError", "available_dispatches", "convert", "dispatch",
           "set_dispatch", "__version__"]
