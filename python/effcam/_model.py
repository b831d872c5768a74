"""Model, Prediction and Explanation: the Python face of effcam's C++ API (effcam._effcam does the work)."""
import collections
import concurrent.futures
import io
import json
import os
import sys
import time
from typing import NamedTuple

import numpy as np

from . import _effcam
from ._errors import FileError, ValueError

# The keys of to_dict() that measure a run rather than state its answer (the rest is equal, bit for bit, to what
# effcam-predict --json prints for the same image).
VOLATILE_KEYS = ("timing_ms", "peak_rss_bytes", "rss_bytes", "arena_bytes", "arena_lower_bound_bytes")


class ClassScore(NamedTuple):
    """One of a prediction's best classes."""
    label: str
    index: int
    probability: float


class LayerInfo(NamedTuple):
    """A layer a CAM can target: its Keras name (nested models as "outer/inner"), class and output map size."""
    name: str
    class_name: str
    height: int
    width: int
    channels: int


_PIL_PIXEL_MODES = {"L": 1, "LA": 2, "RGB": 3, "RGBA": 4}  # PIL modes that are 8-bit interleaved channels


def _image_source(image, channels):
    """(kind, object, name) for the compiled module: a path, an encoded file in memory, or uint8 pixels."""
    if isinstance(image, (str, os.PathLike)):
        path = os.fsdecode(os.fspath(image))
        return "file", path, path
    if isinstance(image, (bytes, bytearray, memoryview)):
        if isinstance(image, memoryview) and not image.c_contiguous:
            raise ValueError("image: a non-contiguous memoryview; an encoded file must be contiguous bytes")
        return "encoded", image, "<memory>"
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8:
            raise ValueError(f"image: a numpy array of dtype {image.dtype}; effcam takes uint8 pixels "
                             "(H x W, or H x W x C with C = 1, 2 (LA), 3 or 4)")
        if any(stride < 0 for stride in image.strides):  # a reversed view: the library reads forward only
            image = np.ascontiguousarray(image)
        return "pixels", image, "<numpy>"
    pil = sys.modules.get("PIL.Image")  # a PIL image exists only if its caller imported PIL
    if pil is not None and isinstance(image, pil.Image):
        # L, LA, RGB and RGBA go as they are (the library converts them as PIL's convert() does); other modes
        # (palette, 16-bit, CMYK...) through PIL's own conversion to what the model takes.
        if image.mode not in _PIL_PIXEL_MODES:
            image = image.convert("L" if channels == 1 else "RGB")
        pixels = np.frombuffer(image.tobytes(), dtype=np.uint8)
        return "pixels", pixels.reshape(image.height, image.width, _PIL_PIXEL_MODES[image.mode]), "<PIL.Image>"
    raise TypeError(f"image: expected a path, bytes, a PIL.Image or a numpy uint8 array, got {type(image).__name__}")


def _check_top_k(top_k):
    _check_int("top_k", top_k, 1, 1_000_000)


def _check_int(name, value, low, high):
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name} must be an integer in {low}..{high}, got {value!r}")


# The decoding choices, named as effcam-predict's --exif-orientation and --decode name them.
_EXIF_ORIENTATION = {"ignore": False, "apply": True}
_DECODE = {"exact": False, "fast": True}


def _decoding(exif_orientation, decode, input_image):
    """(apply_exif_orientation, fast_jpeg_decode, input_image) for the compiled module, checked."""
    if exif_orientation not in _EXIF_ORIENTATION:
        raise ValueError(f"exif_orientation must be 'ignore' or 'apply', got {exif_orientation!r}")
    if decode not in _DECODE:
        raise ValueError(f"decode must be 'exact' or 'fast', got {decode!r}")
    return _EXIF_ORIENTATION[exif_orientation], _DECODE[decode], bool(input_image)


class Prediction:
    """The answer for one image: best classes, every class's probability, timing.

    Its arrays are read-only numpy views of the library's result (no copy)."""
    __slots__ = ("_result",)

    def __init__(self, result):
        self._result = result

    @property
    def top_k(self):
        """The best classes, best first: a list of ClassScore(label, index, probability)."""
        return [ClassScore(*entry) for entry in self._result.top_k]

    @property
    def label(self):
        """The best class's label."""
        return self._result.top_k[0][0]

    @property
    def index(self):
        """The best class's index."""
        return self._result.top_k[0][1]

    @property
    def probability(self):
        """The best class's probability."""
        return self._result.top_k[0][2]

    @property
    def probabilities(self):
        """Every class's probability: numpy float32, one per class."""
        return self._result.probabilities

    @property
    def logits(self):
        """The pre-softmax scores (numpy float32), or None when the model does not end in softmax."""
        return self._result.logits

    @property
    def timing_ms(self):
        """Milliseconds spent: {"decode", "preprocess", "forward", "cam", "total"}."""
        return self._result.timing_ms

    @property
    def image(self):
        """The image's name: its path, or "<memory>", "<numpy>", "<PIL.Image>"."""
        return self._result.image

    @property
    def input_size(self):
        """(height, width) the model ran at."""
        return self._result.input_size

    @property
    def image_size(self):
        """(height, width) of the image before resizing (after any EXIF orientation applied)."""
        return self._result.image_size

    @property
    def exif_orientation(self):
        """The file's EXIF orientation tag, 1..8 (1 when it has none, and for pixels)."""
        return self._result.exif_orientation

    @property
    def applied_orientation(self):
        """exif_orientation when predict(exif_orientation="apply") turned the image by it, else 1."""
        return self._result.applied_orientation

    @property
    def jpeg_scale_denominator(self):
        """2, 4 or 8 when predict(decode="fast") decoded a JPEG at that DCT scale, else 1."""
        return self._result.jpeg_scale_denominator

    def input_png(self):
        """The 8-bit image the model received (decoded, oriented, resized), as PNG bytes; needs
        predict(..., input_image=True)."""
        png = self._result.input_png
        if png is None:
            raise ValueError("this prediction has no input image: ask for it with input_image=True")
        return png

    def input_image(self):
        """input_png() as a PIL.Image ("RGB" or "L", the model's input size); np.asarray() of it gives the pixels."""
        return _pil_image(self.input_png())

    @property
    def dispatch(self):
        """The kernel path that ran: "avx512", "avx2" or "scalar"."""
        return self._result.dispatch

    @property
    def memory(self):
        """The process's memory after this call: {"peak_rss_bytes", "rss_bytes", "arena_bytes",
        "arena_lower_bound_bytes"}."""
        return self._result.memory

    def to_json(self, embed_images=False):
        """The JSON line effcam-predict --json prints for this image (embed_images: base64 pictures too)."""
        return self._result.to_json("", embed_images)

    def to_dict(self):
        """to_json() as a dict: the same fields and numbers as effcam-predict --json."""
        return json.loads(self._result.to_json("", False))

    def __repr__(self):
        return f"<effcam.Prediction {self.label!r} ({self.index}) p={self.probability:.4f}>"


class Explanation:
    """A prediction with its class-activation map (Grad-CAM or another method) and the pictures of it."""
    __slots__ = ("_result", "_prediction", "_render", "_alpha", "_size")

    def __init__(self, result, render, alpha, size):
        self._result = result
        self._prediction = Prediction(result)
        self._render = render  # (overlay, heatmap, alpha, size) -> the same result with these pictures
        self._alpha = alpha
        self._size = size

    @property
    def prediction(self):
        """The Prediction this explains."""
        return self._prediction

    @property
    def cam(self):
        """The map at the target layer's resolution: numpy float32 H x W, ReLU(raw) / max, in 0..1."""
        return self._result.cam

    @property
    def raw(self):
        """The method's map before ReLU and normalisation: numpy float32 H x W."""
        return self._result.raw

    @property
    def empty(self):
        """True when nothing in the map is positive: no evidence for the class at that layer (cam is all 0)."""
        return self._result.cam_empty

    @property
    def method(self):
        """The CAM method: "gradcam", "gradcam++", "hirescam", "xgradcam", "layercam" or "eigencam"."""
        return self._result.cam_method

    @property
    def layer(self):
        """The target layer's name."""
        return self._result.cam_layer

    @property
    def class_index(self):
        """The explained class's index."""
        return self._result.cam_class_index

    @property
    def label(self):
        """The explained class's label."""
        return self._result.cam_label

    @property
    def score(self):
        """The value of the differentiated score (the class's probability or logit, see score_kind)."""
        return self._result.cam_score

    @property
    def score_kind(self):
        """"prob" or "logit"."""
        return self._result.cam_score_kind

    def overlay_png(self, alpha=None, size=None):
        """The map in jet colours over the image, blended as the Keras Grad-CAM tutorial does, as PNG bytes.
        alpha (default: explain()'s) weighs the map; size "model" (the model's input) or "original" (the image's).
        Pictures other than the ones explain() rendered are drawn from the same map over the image decoded again
        (no network pass)."""
        alpha = self._alpha if alpha is None else alpha
        size = self._size if size is None else size
        png = self._result.overlay_png if (alpha, size) == (self._alpha, self._size) else None
        return png if png is not None else self._render(True, False, alpha, size).overlay_png

    def overlay(self, alpha=None, size=None):
        """overlay_png() as a PIL.Image (RGB)."""
        return _pil_image(self.overlay_png(alpha, size))

    def heatmap_png(self, size=None):
        """The map alone in jet colours, as PNG bytes, at size "model" or "original" (default: explain()'s)."""
        size = self._size if size is None else size
        png = self._result.heatmap_png if size == self._size else None
        return png if png is not None else self._render(False, True, self._alpha, size).heatmap_png

    def heatmap(self, size=None):
        """heatmap_png() as a PIL.Image (RGB)."""
        return _pil_image(self.heatmap_png(size))

    def to_json(self, embed_images=False):
        """The JSON line effcam-predict --json --cam ... prints for this image."""
        return self._result.to_json("", embed_images)

    def to_dict(self):
        """to_json() as a dict (its "cam" holds the map's values and raw values as lists)."""
        return json.loads(self._result.to_json("", False))

    def __repr__(self):
        return f"<effcam.Explanation {self.method} at {self.layer!r} for {self.label!r} ({self.class_index})>"


def _pil_image(png):
    import PIL.Image  # only callers who want PIL images pay for importing PIL
    image = PIL.Image.open(io.BytesIO(png))
    image.load()
    return image


class _Progress:
    """A one-line progress bar on stderr, redrawn at most 10 times a second."""

    def __init__(self, total):
        self.total, self.done, self.start, self.drawn = total, 0, time.monotonic(), 0.0

    def step(self):
        self.done += 1
        now = time.monotonic()
        if now - self.drawn >= 0.1 or self.done == self.total:
            self.drawn = now
            rate = self.done / max(now - self.start, 1e-9)
            if self.total:
                filled = 30 * self.done // self.total
                bar = f"[{'#' * filled}{'.' * (30 - filled)}] {self.done}/{self.total}"
            else:
                bar = f"{self.done}"
            sys.stderr.write(f"\reffcam {bar} {rate:.1f} images/s")
            sys.stderr.flush()

    def close(self):
        sys.stderr.write("\n")
        sys.stderr.flush()


class Model:
    """A converted .effcam model, mapped read-only and validated, ready to classify and explain images.

    Thread-safe: it lends each calling thread one of `sessions` predictors (each with its own planned working
    memory, made on first need), so up to `sessions` Python threads predict at once, with the GIL released while
    they decode, run and explain. `threads` are the worker threads of each predictor."""

    def __init__(self, path, threads=1, sessions=1, *, cam_layers=None, max_image_pixels=100_000_000,
                 max_image_mib=None, memory_budget=None):
        """Loads `path`. cam_layers: the layers explain() will target, planned up front (None: the model's
        default layer; []: plan the forward pass alone; other layers are planned when first asked for).
        max_image_pixels: encoded images declaring more pixels (width x height) are refused with ImageError before
        any pixel is decoded (1..100,000,000). max_image_mib: the byte budget of one image (decoding, resizing,
        original-size pictures), as effcam-predict --max-image-mib; images that need more are refused with
        ImageError (None: 24 bytes per pixel of max_image_pixels + 4 MiB). memory["image_bytes"] bounds what one
        call allocates besides the arena. memory_budget: the most bytes each session's arena may take, as
        effcam-predict --memory-budget (an int, or a string such as "12MiB"): explaining a deep layer then
        recomputes activations instead of keeping them (None: twice the forward pass's arena); a layer that cannot
        fit raises ValueError naming its smallest arena.
        Raises FileError (cannot open), FormatError (not a valid .effcam file), ValueError (bad options)."""
        for name, value, top in (("threads", threads, 256), ("sessions", sessions, 256),
                                 ("max_image_pixels", max_image_pixels, 100_000_000)):
            _check_int(name, value, 1, top)
        if max_image_mib is not None:
            _check_int("max_image_mib", max_image_mib, 1, 1 << 20)
        if isinstance(memory_budget, str):
            memory_budget = _effcam.parse_byte_size(memory_budget)
        if memory_budget is not None:
            _check_int("memory_budget", memory_budget, 1, (1 << 63) - 1)
        if isinstance(cam_layers, str):
            cam_layers = [cam_layers]
        self._core = _effcam.Model(os.fsdecode(os.fspath(path)), threads, sessions,
                                   None if cam_layers is None else list(cam_layers), max_image_pixels,
                                   0 if max_image_mib is None else max_image_mib << 20,
                                   0 if memory_budget is None else memory_budget)
        self._channels = self._core.channels

    # -- what the model is ---------------------------------------------------------------------------------------
    @property
    def path(self):
        """The file it was loaded from."""
        return self._core.path

    @property
    def input_size(self):
        """(height, width) of the model's input; images are resized to it (PIL's Lanczos)."""
        return self._core.input_size

    @property
    def channels(self):
        """1 (grayscale) or 3 (RGB)."""
        return self._core.channels

    @property
    def labels(self):
        """One label per class (the file's, or "class_<index>" when it has none)."""
        return self._core.labels

    @property
    def layers(self):
        """Every layer a CAM can target, in execution order: a list of LayerInfo."""
        return [LayerInfo(*layer) for layer in self._core.layers]

    @property
    def default_cam_layer(self):
        """The layer explain() targets by default: the last convolution (top_conv in EfficientNetV2)."""
        return self._core.default_cam_layer

    @property
    def memory(self):
        """Bytes: "file_bytes" (the .effcam file), "weight_bytes" (shared by every process mapping it),
        "arena_bytes" (the working memory of one session, planned for the CAM layers), "forward_arena_bytes",
        "arena_lower_bound_bytes", "image_bytes" (a bound on what one call allocates besides the arena, for any
        image it accepts), "max_image_bytes" (the image budget in force, see max_image_mib), and
        "sessions_allocated" (how many sessions exist so far)."""
        return {"file_bytes": self._core.file_bytes, "weight_bytes": self._core.weight_bytes, **self._core.memory,
                "sessions_allocated": self._core.sessions_allocated}

    @property
    def closed(self):
        """True after close()."""
        return self._core.closed

    # -- using it ------------------------------------------------------------------------------------------------
    def predict(self, image, top_k=5, *, exif_orientation="ignore", decode="exact", input_image=False):
        """Classifies one image: a path, bytes / bytearray / memoryview of an encoded file (JPEG, PNG, WebP, BMP,
        GIF), a PIL.Image, or a numpy uint8 array H x W or H x W x C (C = 1 (L), 2 (LA), 3 (RGB) or 4 (RGBA); any
        strides). -> Prediction.
        exif_orientation: "ignore" (as PIL's Image.open) or "apply" (turn the image upright first, as
        ImageOps.exif_transpose). decode: "exact", or "fast" (JPEG DCT scaling as PIL's Image.draft, then the same
        resize: slightly different pixels). input_image: keep the 8-bit model input (Prediction.input_image()).
        Raises ImageError (undecodable image), FileError (unreadable path), ValueError (bad arguments)."""
        _check_top_k(top_k)
        decoding = _decoding(exif_orientation, decode, input_image)
        kind, source, name = _image_source(image, self._channels)
        return Prediction(self._core.run(kind, source, name, top_k, "none", "", "logit", None, False, False,
                                         "model", 0.4, *decoding))

    def explain(self, image, method="gradcam", layer=None, score="prob", class_index=None, *, top_k=5,
                overlay=True, heatmap=False, alpha=0.4, size="model", exif_orientation="ignore", decode="exact",
                input_image=False):
        """Classifies an image and explains a class with a class-activation map. -> Explanation.

        method: "gradcam", "gradcam++", "hirescam", "xgradcam", "layercam" or "eigencam".
        layer: the target layer (None: the model's default_cam_layer, or the first of Model(cam_layers=...)).
        score: "prob" (the class's softmax probability, as the dermatology app did) or "logit".
        class_index: the class to explain (None: the best one).
        overlay, heatmap: render these pictures in the same pass (others are rendered on demand), with
        alpha (the map's weight in the overlay) and size ("model" or "original").
        exif_orientation, decode, input_image: as for predict() (the pictures follow the image's orientation)."""
        _check_top_k(top_k)
        decoding = _decoding(exif_orientation, decode, input_image)
        if method == "none":
            raise ValueError("explain needs a CAM method (gradcam, gradcam++, hirescam, xgradcam, layercam, eigencam)")
        if class_index is not None and (isinstance(class_index, bool) or not isinstance(class_index, int)
                                        or not 0 <= class_index < 2**31):
            raise ValueError(f"class_index {class_index!r} is out of range (0..{self._core.classes - 1})")
        kind, source, name = _image_source(image, self._channels)
        arguments = (kind, source, name, top_k, str(method), layer or "", str(score))

        result = self._core.run(*arguments, class_index, bool(overlay), bool(heatmap), str(size), float(alpha),
                                *decoding)

        def render(with_overlay, with_heatmap, render_alpha, render_size):
            return self._core.render(result, kind, source, name, with_overlay, with_heatmap, str(render_size),
                                     float(render_alpha))

        return Explanation(result, render, float(alpha), str(size))

    def predict_batch(self, images, top_k=5, *, progress=True, errors="raise"):
        """Predicts every image of an iterable, in order, as an iterator of Prediction; `sessions` images at a
        time. progress: a progress bar on stderr when it is a terminal and there are 10 images or more (or an
        unknown number). errors: "raise" stops at the first failing image; "return" yields its exception instead."""
        _check_top_k(top_k)
        if errors not in ("raise", "return"):
            raise ValueError(f"errors must be 'raise' or 'return', got {errors!r}")
        total = len(images) if hasattr(images, "__len__") else None
        bar = _Progress(total) if progress and sys.stderr.isatty() and (total is None or total >= 10) else None

        def one(image):
            try:
                return self.predict(image, top_k)
            except Exception as error:  # noqa: BLE001 - handed to the caller as asked
                if errors == "raise":
                    raise
                return error

        try:
            sessions = self._core.sessions
            if sessions == 1:
                for image in images:
                    prediction = one(image)
                    if bar:
                        bar.step()
                    yield prediction
                return
            with concurrent.futures.ThreadPoolExecutor(max_workers=sessions) as pool:
                pending = collections.deque()
                for image in images:
                    pending.append(pool.submit(one, image))
                    if len(pending) >= 2 * sessions:
                        prediction = pending.popleft().result()
                        if bar:
                            bar.step()
                        yield prediction
                while pending:
                    prediction = pending.popleft().result()
                    if bar:
                        bar.step()
                    yield prediction
        finally:
            if bar:
                bar.close()

    def close(self):
        """Frees the sessions' memory and unmaps the file (calls still running finish first); later calls raise
        ValueError."""
        self._core.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        if self.closed:
            return f"<effcam.Model {self.path!r} closed>"
        height, width = self.input_size
        return f"<effcam.Model {self.path!r} {height}x{width}x{self.channels}, {len(self.labels)} classes>"


def convert(input, output, dtype="fp16", labels=None, input_size=None):  # noqa: A002 - the issue's names
    """Converts a Keras 3 .keras or Keras 2 / 3 .h5 classifier to a .effcam file, written atomically.

    dtype: "fp16" or "fp32" weights. labels: one per class, as a list or a file with one per line. input_size:
    (height, width) for models declared with None spatial dimensions. -> ConversionReport.
    Raises FileError, FormatError (not a Keras model, an unsupported layer: the message names it), ValueError."""
    if isinstance(labels, (str, os.PathLike)):
        labels = _read_labels(labels)
    if input_size is not None:
        input_size = tuple(int(side) for side in input_size)
        if len(input_size) != 2 or not all(1 <= side < 2**32 for side in input_size):
            raise ValueError(f"input_size must be (height, width), got {input_size!r}")
    from . import _convert  # the converter's libraries load on first use, not with effcam
    return _convert.convert(os.fsdecode(os.fspath(input)), os.fsdecode(os.fspath(output)), str(dtype),
                           [str(label) for label in labels or []], input_size)


def _read_labels(path):
    """One label per line, as effcam-convert --labels reads them (CR LF or LF; trailing empty lines ignored)."""
    try:
        with open(path, encoding="utf-8", newline="") as f:
            labels = [line.rstrip("\n").removesuffix("\r") for line in f]
    except OSError as error:
        raise FileError(f"cannot open labels file {os.fsdecode(path)}") from error
    while labels and not labels[-1]:
        labels.pop()
    if not labels:
        raise ValueError(f"labels file {os.fsdecode(path)} has no labels")
    return labels
