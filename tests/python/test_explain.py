"""Explanation's pictures are the tool's pictures (decoded pixels equal), rendered in the same pass or on demand."""
import io
import os

import numpy as np
import pytest
from PIL import Image

from conftest import converted, effcam, tool_records, SANITIZED

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
pytestmark = pytest.mark.skipif(SANITIZED, reason="pictures are checked in the plain build")


def _pixels(png_or_path):
    source = io.BytesIO(png_or_path) if isinstance(png_or_path, bytes) else png_or_path
    with Image.open(source) as image:
        return np.asarray(image.convert("RGB"))


@pytest.mark.parametrize("size", ["model", "original"])
def test_overlay_and_heatmap_equal_the_tools(food101, bibimbap, tmp_path, size):
    overlay_path, heatmap_path = str(tmp_path / "overlay.png"), str(tmp_path / "heatmap.png")
    tool_records(converted("food101"), [bibimbap], ["--cam", "gradcam", "--cam-score", "prob", "--overlay",
                                                    overlay_path, "--heatmap", heatmap_path, "--overlay-size", size])
    e = food101.explain(bibimbap, heatmap=True, size=size)
    assert e.overlay_png().startswith(PNG_SIGNATURE)
    assert np.array_equal(_pixels(e.overlay_png()), _pixels(overlay_path))
    assert np.array_equal(_pixels(e.heatmap_png()), _pixels(heatmap_path))
    overlay = e.overlay()
    assert isinstance(overlay, Image.Image) and overlay.mode == "RGB"
    with Image.open(bibimbap) as original:
        expected = original.size if size == "original" else tuple(reversed(food101.input_size))
    assert overlay.size == expected and e.heatmap().size == expected


def test_pictures_not_rendered_up_front_are_rendered_on_demand(food101, bibimbap):
    eager = food101.explain(bibimbap, overlay=True, heatmap=True)
    lazy = food101.explain(bibimbap, overlay=False, heatmap=False)
    assert lazy.overlay_png() == eager.overlay_png()
    assert lazy.heatmap_png() == eager.heatmap_png()
    # Another alpha or size: the same map, so the same heatmap under a different blend.
    stronger = eager.overlay(alpha=0.8)
    assert stronger.size == eager.overlay().size
    assert not np.array_equal(np.asarray(stronger), np.asarray(eager.overlay()))
    assert eager.overlay(size="original").size == Image.open(bibimbap).size


def test_explaining_another_class_keeps_the_prediction(food101, bibimbap):
    best = food101.explain(bibimbap, overlay=False)
    other = food101.explain(bibimbap, class_index=3, overlay=False)
    assert other.class_index == 3 and other.label == food101.labels[3]
    assert other.prediction.index == best.prediction.index == best.class_index
    assert not np.array_equal(other.cam, best.cam)
    assert 0.0 <= other.cam.min() and other.cam.max() <= 1.0


def test_explaining_a_layer_outside_the_plan_replans(bibimbap):
    path = converted("food101")
    with effcam.Model(path, cam_layers=[]) as model:  # planned for the forward pass alone
        assert model.memory["arena_bytes"] == model.memory["forward_arena_bytes"]
        e = model.explain(bibimbap, layer="block2b_add", overlay=False)  # deep: more arena even recomputing
        assert e.layer.endswith("block2b_add")
        assert model.memory["arena_bytes"] == e.prediction.memory["arena_bytes"] > model.memory["forward_arena_bytes"]
        assert model.memory["sessions_allocated"] == 1
        assert os.path.basename(model.path) == os.path.basename(path)


@pytest.mark.parametrize("source", ["path", "bytes", "numpy"])
def test_pictures_drawn_again_equal_an_explain_with_those_settings(food101, bibimbap, source):
    image = {"path": bibimbap, "bytes": open(bibimbap, "rb").read(), "numpy": _pixels(bibimbap)[::-1][::-1]}[source]
    e = food101.explain(image, class_index=7, overlay=False)
    for alpha, size in ((0.6, "model"), (0.25, "original")):
        again = food101.explain(image, class_index=7, alpha=alpha, size=size, heatmap=True)
        assert e.overlay_png(alpha=alpha, size=size) == again.overlay_png()
        assert e.heatmap_png(size=size) == again.heatmap_png()
    # The Explanation keeps its own picture settings and its numbers.
    assert e.overlay_png() == food101.explain(image, class_index=7).overlay_png()
    assert e.class_index == 7


def test_pictures_drawn_again_after_close_raise(bibimbap):
    with effcam.Model(converted("food101")) as model:
        e = model.explain(bibimbap, overlay=False)
    with pytest.raises(effcam.ValueError, match="closed"):
        e.overlay()


def test_a_memory_budget_recomputes_to_the_same_map_and_refuses_below_its_floor(bibimbap):
    """memory_budget as effcam-predict --memory-budget: the default plan recomputes deep layers (within twice the
    forward's arena), a generous budget keeps everything, both give the same map to the bit; below the floor:
    ValueError naming it."""
    layer = "block2b_add"
    with effcam.Model(converted("food101"), cam_layers=[layer]) as chosen, \
            effcam.Model(converted("food101"), cam_layers=[layer], memory_budget="1GiB") as keeping:
        small, kept = chosen.explain(bibimbap, layer=layer), keeping.explain(bibimbap, layer=layer)
        memory = small.prediction.memory
        assert memory["recomputed_ops"] > 0 and kept.prediction.memory["recomputed_ops"] == 0
        assert memory["arena_floor_bytes"] <= memory["arena_bytes"] <= 2 * memory["forward_arena_bytes"]
        assert memory["arena_bytes"] < kept.prediction.memory["arena_bytes"]
        assert np.array_equal(small.raw, kept.raw)
        floor = memory["arena_floor_bytes"]
    with pytest.raises(effcam.ValueError, match=f"at least {floor} bytes"):
        with effcam.Model(converted("food101"), cam_layers=[layer], memory_budget=floor - 1) as tight:
            tight.explain(bibimbap, layer=layer)
    for bad in ("12.5M", "-1", 0, 1.5):
        with pytest.raises(effcam.ValueError):
            effcam.Model(converted("food101"), memory_budget=bad)
