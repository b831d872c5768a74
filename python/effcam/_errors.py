"""effcam's exceptions. The compiled module raises them with the library's one-line messages (the same the
command-line tools print); the classes live here so that they can also derive from Python's own exceptions."""
import builtins


class Error(Exception):
    """Any error effcam reports: the message names the problem (file, layer, argument...)."""


class ValueError(Error, builtins.ValueError):  # noqa: A001 - effcam.ValueError on purpose, as the issue names it
    """A bad argument: an unknown layer or method, a class out of range, a wrong array, a closed model."""


class FileError(Error, OSError):
    """A file that cannot be opened, read or written."""


class FormatError(Error):
    """A model file (.effcam, .keras, .h5) that is corrupt, truncated or unsupported."""


class ImageError(Error):
    """An image that cannot be decoded: not an image, truncated, corrupt, or over the size limits."""


for _error in (Error, ValueError, FileError, FormatError, ImageError):
    _error.__module__ = "effcam"  # tracebacks say effcam.ImageError, where users catch it
