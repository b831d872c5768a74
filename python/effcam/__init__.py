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
from ._errors import Error, FileError, FormatError, ImageError, ValueError  # noqa: A004 - effcam.ValueError
from . import _effcam
from ._model import ClassScore, Explanation, LayerInfo, Model, Prediction, convert

__version__ = _effcam.version()


def __getattr__(name):
    """effcam.ConversionReport, from the converter's module, loaded on first use (effcam.convert loads it too)."""
    if name == "ConversionReport":
        from ._convert import ConversionReport
        return ConversionReport
    raise AttributeError(f"module 'effcam' has no attribute {name!r}")

__all__ = ["ClassScore", "ConversionReport", "Error", "Explanation", "FileError", "FormatError", "ImageError",
           "LayerInfo", "Model", "Prediction", "ValueError", "convert", "__version__"]
