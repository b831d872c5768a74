"""Phone-sized photos for the image memory bars (check_image_memory.py) and bench/image_decode.py: scipy's face
photo upscaled with sensor-like noise, as a 4032x3024 JPEG (quality 90, 4:2:0, what phones write), the same as PNG,
and a 6000x8000 JPEG. Written once into a folder; regenerated when missing."""
import os

import numpy as np
from PIL import Image

LARGE_IMAGES = {  # name -> (width, height, format, save options)
    "photo_4032x3024.jpg": (4032, 3024, "JPEG", {"quality": 90, "subsampling": 2}),
    "photo_4032x3024.png": (4032, 3024, "PNG", {"compress_level": 6}),
    "photo_6000x8000.jpg": (6000, 8000, "JPEG", {"quality": 90, "subsampling": 2}),
}


def photo(width, height, seed=0):
    import warnings
    warnings.filterwarnings("ignore")
    from scipy import misc
    face = Image.fromarray(misc.face(), "RGB").resize((width, height), Image.LANCZOS)
    noise = np.random.default_rng(seed).normal(0.0, 4.0, (height, width, 3))
    return Image.fromarray(np.clip(np.asarray(face) + noise, 0, 255).astype(np.uint8), "RGB")


def make_large_images(folder):
    """name -> path of each image, written into folder if absent."""
    os.makedirs(folder, exist_ok=True)
    paths = {}
    for name, (width, height, fmt, options) in LARGE_IMAGES.items():
        path = os.path.join(folder, name)
        if not os.path.exists(path):
            photo(width, height).save(path + ".tmp", fmt, **options)
            os.replace(path + ".tmp", path)
        paths[name] = path
    return paths
