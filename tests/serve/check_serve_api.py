"""effcam-serve's HTTP API end to end, against the real server on a loopback port.

  parity    /predict and /v1/models/{name}/predict (raw body and multipart) give effcam-predict --json's numbers bit
            for bit (probabilities, logits, top-k, Grad-CAM values and raw map): S fp16 and fp32, B0, Food-101
            fp16 and fp32
  api       models, health, memory, metrics, the page, and each error status with its {"error": ...} body
  oip       the Open Inference Protocol: health, server and model metadata, model ready, infer with each input kind
            (BYTES base64, UINT8 pixels, binary tensor data of both) and its error form for bad tensors; requests
            are written from the protocol's text (kserve/open-inference-protocol inference_rest.md and the binary
            tensor data extension), not from the server's code
"""
import base64
import io
import itertools
import json
import os
import sys
import time

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import servelib as s  # noqa: E402
from servelib import t  # noqa: E402

CAM_FIELDS = ("method", "layer", "class_index", "label", "score", "score_kind", "height", "width", "values", "raw",
              "cam_empty")


def same_numbers(expected, got, what):
    """The fields that must be equal bit for bit (JSON floats parse to the same double when printed alike)."""
    for field in ("probabilities", "logits", "top_k", "input"):
        t.check(expected.get(field) == got.get(field), f"{what}: {field} equal to effcam-predict's")
    if "cam" in expected or "cam" in got:
        for field in CAM_FIELDS:
            t.check(expected.get("cam", {}).get(field) == got.get("cam", {}).get(field),
                    f"{what}: cam.{field} equal to effcam-predict's")


def parity_case(name, model, images, cam=True):
    extra = ["--cam", "gradcam"] if cam else []
    expected = t.predict(model, images, extra=extra)
    query = "?cam=gradcam" if cam else ""
    with s.Server(f"{name}={model}", args=["--sessions", "1"]) as server:
        for image, reference in zip(images, expected):
            data = s.read(image)
            status, got = server.json("POST", f"/v1/models/{name}/predict{query}", data,
                                      {"Content-Type": "image/png"})
            t.check(status == 200, f"{name} {os.path.basename(image)} raw body: 200 (got {status})")
            if status == 200:
                same_numbers(reference, got, f"{name} {os.path.basename(image)} raw body")
                t.check(got["model"] == name, f"{name}: the answer names the model")
            body, content_type = s.multipart([("image", os.path.basename(image), "image/png", data)])
            status, got = server.json("POST", f"/predict{query}", body, {"Content-Type": content_type})
            t.check(status == 200, f"{name} {os.path.basename(image)} multipart: 200 (got {status})")
            if status == 200:
                same_numbers(reference, got, f"{name} {os.path.basename(image)} multipart")


def parity():
    s.require_built()
    s_images = t.sample(t.test_images(300, 300, 2))
    parity_case("effv2s_fp16", s.s_model("fp16"), s_images)
    parity_case("effv2s_fp32", s.s_model("fp32"), s_images[:1])
    parity_case("effv2b0", s.b0_model("fp16"), t.sample(t.test_images(224, 224, 2)))
    photos = t.sample(sorted(os.path.join(t.FOOD101, "samples", f) for f in os.listdir(os.path.join(t.FOOD101, "samples"))
                             if f.endswith(".png")))
    parity_case("food101_fp16", s.food101_model("fp16"), photos)
    parity_case("food101_fp32", s.food101_model("fp32"), photos[:1], cam=False)


def bibimbap():
    return os.path.join(t.FOOD101, "samples", "bibimbap.png")


def api():
    s.require_built()
    model = s.food101_model("fp16")
    photo = s.read(bibimbap())
    with s.Server(f"food={model}", args=["--sessions", "1", "--queue", "2"]) as server:
        status, models = server.json("GET", "/v1/models")
        t.check(status == 200 and [m["name"] for m in models["models"]] == ["food"], "GET /v1/models lists the model")
        info = models["models"][0]
        t.check(info["input"] == {"height": 224, "width": 224, "channels": 3}, "model input 224x224x3")
        t.check(info["classes"] == 101 and len(info["labels"]) == 101 and "bibimbap" in info["labels"],
                "101 classes with their labels")
        t.check(info["default_cam_layer"] in [layer["name"] for layer in info["cam_layers"]],
                "the default CAM layer is among the CAM-able layers")
        t.check(info["arena_bytes"] > 0 and info["file"] == model, "arena bytes and file reported")
        status, one = server.json("GET", "/v1/models/food")
        t.check(status == 200 and one == info, "GET /v1/models/food is the listed entry")

        status, answer = server.json("POST", "/predict?top_k=3&cam=gradcam&overlay=png&heatmap=png", photo,
                                     {"Content-Type": "image/png"})
        t.check(status == 200 and answer["top_k"][0]["label"] == "bibimbap", "the bibimbap photo is bibimbap")
        t.check(len(answer["top_k"]) == 3, "top_k=3 gives 3 classes")
        t.check(answer["overlay"]["mime"] == "image/png" and answer["heatmap"]["mime"] == "image/png",
                "overlay and heatmap embedded as PNG")
        picture = Image.open(io.BytesIO(base64.b64decode(answer["overlay"]["base64"])))
        t.check(picture.size == (224, 224), f"overlay at the model's size (got {picture.size})")
        status, answer = server.json("POST", "/predict?overlay=jpeg&overlay_size=original", photo,
                                     {"Content-Type": "application/octet-stream"})
        original = Image.open(io.BytesIO(photo)).size
        picture = Image.open(io.BytesIO(base64.b64decode(answer["overlay"]["base64"])))
        t.check(status == 200 and answer["overlay"]["mime"] == "image/jpeg" and picture.size == original,
                f"overlay=jpeg&overlay_size=original: a JPEG of the photo's size {original} (got {picture.size})")
        t.check(answer["cam"]["method"] == "gradcam", "an overlay without cam= uses --cam-default (gradcam)")

        status, live = server.json("GET", "/health/live")
        t.check(status == 200 and live == {"live": True}, "GET /health/live")
        status, ready = server.json("GET", "/health/ready")
        t.check(status == 200 and ready == {"ready": True}, "GET /health/ready")
        # A request is counted once its answer is written, a moment after the client has it (under the sanitizers
        # two of the six requests above were still uncounted at the first look): poll until every request made
        # before this poll is, the earlier polls included, for up to 10 s.
        deadline = time.monotonic() + 10
        for polls in itertools.count():
            status, health = server.json("GET", "/health")
            if status != 200 or health["requests"] >= 6 + polls or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        t.check(status == 200 and health["live"] and health["ready"] and health["uptime_s"] > 0 and
                health["requests"] >= 6 + polls, f"GET /health: live, ready, uptime, request counts ({health})")
        status, memory = server.json("GET", "/memory")
        t.check(status == 200 and 0 < memory["rss_bytes"] <= memory["peak_rss_bytes"] <= memory["bound_bytes"],
                f"GET /memory: rss <= peak <= bound ({memory})")
        t.check(memory["pss_bytes"] > 0 and memory["weights_bytes"] > 0 and memory["arenas_bytes"] > 0,
                "GET /memory: pss, weights, arenas")
        t.check(memory["bound_bytes"] == server.bound(), "GET /memory's bound is the one printed at start")
        status, headers, metrics = server.request("GET", "/metrics")
        text = metrics.decode()
        t.check(status == 200 and headers["content-type"].startswith("text/plain"), "GET /metrics is text")
        for pattern in ('effcam_requests_total{endpoint="/predict",code="200"} 2',
                        'effcam_request_duration_seconds_bucket{endpoint="/predict",le="+Inf"} 2',
                        'effcam_request_duration_seconds_count{endpoint="/predict"} 2',
                        'effcam_queue_depth{model="food"} 0', 'effcam_sessions_busy{model="food"} 0',
                        "effcam_rss_bytes ", "effcam_peak_rss_bytes "):
            t.check(pattern in text, f"/metrics has {pattern!r}")
        status, headers, page = server.request("GET", "/")
        t.check(status == 200 and headers["content-type"].startswith("text/html") and b"<title>effcam</title>" in page
                and b"http" not in page.replace(b"http-equiv", b""), "GET / serves the page, with no outside URL")

        errors = [
            ("GET", "/predict", None, {}, 405, "GET on /predict"),
            ("DELETE", "/v1/models", None, {}, 405, "DELETE on /v1/models"),
            ("GET", "/nowhere", None, {}, 404, "an unknown path"),
            ("POST", "/v1/models/nope/predict", photo, {"Content-Type": "image/png"}, 404, "an unknown model"),
            ("GET", "/v1/models/nope", None, {}, 404, "an unknown model's metadata"),
            ("POST", "/predict", b"hello", {"Content-Type": "text/plain"}, 415, "a text/plain body"),
            ("POST", "/predict", b"not an image at all", {"Content-Type": "image/png"}, 400, "a non-image"),
            ("POST", "/predict", b"", {"Content-Type": "image/png"}, 400, "an empty body"),
            ("POST", "/predict?cam=gradcam&cam_layer=no_such_layer", photo, {"Content-Type": "image/png"}, 422,
             "an unknown layer"),
            ("POST", "/predict?cam=gradcam&cam_class=101", photo, {"Content-Type": "image/png"}, 422,
             "a class out of range"),
            ("POST", "/predict?cam=nothing", photo, {"Content-Type": "image/png"}, 422, "an unknown CAM method"),
            ("POST", "/predict?top_k=-1", photo, {"Content-Type": "image/png"}, 422, "a negative top_k"),
            ("POST", "/predict?top_k=99999999999999999999999", photo, {"Content-Type": "image/png"}, 422,
             "a huge top_k"),
            ("POST", "/predict?colour=red", photo, {"Content-Type": "image/png"}, 422, "an unknown parameter"),
        ]
        for method, path, body, headers, expected, what in errors:
            status, _, data = server.request(method, path, body, headers)
            try:
                message = json.loads(data)["error"]
            except (ValueError, KeyError, TypeError):
                message = None
            t.check(status == expected and isinstance(message, str) and "\n" not in message,
                    f"{what}: {expected} with a one-line error (got {status}: {message})")
            t.check(server.alive(), f"{what}: still serving")
        status, answer = server.json("POST", "/predict?top_k=1000", photo, {"Content-Type": "image/png"})
        t.check(status == 200 and len(answer["top_k"]) == 101, "top_k above the classes is clipped to them")


# --- The Open Inference Protocol ---------------------------------------------------------------------------------

def oip():
    s.require_built()
    model = s.food101_model("fp16")
    photo_path = bibimbap()
    photo = s.read(photo_path)
    expected = t.predict(model, [photo_path], extra=["--cam", "gradcam"])[0]
    pixels = np.asarray(Image.open(photo_path).convert("RGB"))  # H, W, 3 uint8, as PIL decodes it
    height, width, _ = pixels.shape
    with s.Server(f"food={model}", args=["--sessions", "1"]) as server:
        status, live = server.json("GET", "/v2/health/live")
        t.check(status == 200 and live.get("live") is True, "GET /v2/health/live: 200, live true")
        status, ready = server.json("GET", "/v2/health/ready")
        t.check(status == 200, "GET /v2/health/ready: 200")
        status, meta = server.json("GET", "/v2")
        t.check(status == 200 and isinstance(meta["name"], str) and isinstance(meta["version"], str) and
                isinstance(meta["extensions"], list), "GET /v2: name, version, extensions")
        status, meta = server.json("GET", "/v2/models/food")
        t.check(status == 200 and meta["name"] == "food" and isinstance(meta["platform"], str),
                "GET /v2/models/food: name, platform")
        for tensor in meta.get("inputs", []) + meta.get("outputs", []):
            t.check(set(tensor) == {"name", "datatype", "shape"} and all(isinstance(d, int) for d in tensor["shape"]),
                    f"metadata tensor {tensor.get('name')}: name, datatype, shape")
        outputs = {o["name"]: o for o in meta["outputs"]}
        t.check(outputs["probabilities"] == {"name": "probabilities", "datatype": "FP32", "shape": [1, 101]},
                "output probabilities FP32 [1,101]")
        status, _ = server.json("GET", "/v2/models/food/versions/1")
        t.check(status == 200, "GET /v2/models/food/versions/1 (the optional version segment)")
        status, ready = server.json("GET", "/v2/models/food/ready")
        t.check(status == 200 and ready == {"name": "food", "ready": True}, "GET /v2/models/food/ready")
        status, error = server.json("GET", "/v2/models/nope")
        t.check(status == 404 and isinstance(error.get("error"), str), "an unknown model: 404 {\"error\"}")

        def infer(request, binary=b"", model_name="food"):
            body = json.dumps(request).encode()
            headers = {"Content-Type": "application/json"}
            if binary:
                headers = {"Content-Type": "application/octet-stream",
                           "Inference-Header-Content-Length": str(len(body))}
            return server.json("POST", f"/v2/models/{model_name}/infer", body + binary, headers)

        def probabilities(answer):
            out = {o["name"]: o for o in answer["outputs"]}["probabilities"]
            t.check(out["datatype"] == "FP32" and out["shape"] == [1, 101], "probabilities FP32 [1,101]")
            return out["data"]

        # BYTES [1] holding the base64 of the encoded image, as KServe's image classifier examples send it.
        request = {"id": "42", "inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "data": [s.b64(photo)]}]}
        status, answer = infer(request)
        t.check(status == 200 and answer["model_name"] == "food" and answer["id"] == "42",
                f"infer BYTES base64: 200, model_name, id echoed (got {status})")
        if status == 200:
            t.check(probabilities(answer) == expected["probabilities"],
                    "infer BYTES base64: probabilities equal effcam-predict's bit for bit")
        # UINT8 [1,H,W,3] raw pixels (PIL's decoding of the file), flat row-major data.
        request = {"inputs": [{"name": "image", "shape": [1, height, width, 3], "datatype": "UINT8",
                               "data": pixels.reshape(-1).tolist()}]}
        status, answer = infer(request)
        t.check(status == 200, f"infer UINT8 [1,H,W,3]: 200 (got {status})")
        if status == 200:
            t.check(probabilities(answer) == expected["probabilities"],
                    "infer UINT8 pixels: probabilities equal effcam-predict's on the file")
        # UINT8 [H,W,3] with nested data.
        request = {"inputs": [{"name": "image", "shape": [height, width, 3], "datatype": "UINT8",
                               "data": pixels.tolist()}], "outputs": [{"name": "probabilities"}]}
        status, answer = infer(request)
        t.check(status == 200 and probabilities(answer) == expected["probabilities"],
                "infer UINT8 [H,W,3] nested data: same probabilities")
        # The binary tensor data extension: the JSON header, then the tensor's bytes.
        request = {"inputs": [{"name": "image", "shape": [1, height, width, 3], "datatype": "UINT8",
                               "parameters": {"binary_data_size": pixels.size}}]}
        status, answer = infer(request, pixels.tobytes())
        t.check(status == 200 and probabilities(answer) == expected["probabilities"],
                f"infer UINT8 binary data: same probabilities (got {status})")
        length_prefixed = len(photo).to_bytes(4, "little") + photo
        request = {"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES",
                               "parameters": {"binary_data_size": len(length_prefixed)}}]}
        status, answer = infer(request, length_prefixed)
        t.check(status == 200 and probabilities(answer) == expected["probabilities"],
                f"infer BYTES binary data: same probabilities (got {status})")
        # A CAM asked for in the request's parameters.
        request = {"parameters": {"cam": "gradcam"},
                   "inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "data": [s.b64(photo)]}]}
        status, answer = infer(request)
        cam = {o["name"]: o for o in answer.get("outputs", [])}.get("cam") if status == 200 else None
        t.check(cam is not None and cam["datatype"] == "FP32" and
                cam["shape"] == [expected["cam"]["height"], expected["cam"]["width"]] and
                cam["data"] == expected["cam"]["values"], "infer with parameters cam=gradcam: cam FP32 [h,w], "
                "values equal effcam-predict's")

        bad = [
            ({"inputs": [{"name": "image", "shape": [1, height, width, 3], "datatype": "FP32",
                          "data": [0.5] * 12}]}, 400, "wrong datatype (FP32)"),
            ({"inputs": [{"name": "image", "shape": [2, 2], "datatype": "UINT8", "data": [1, 2, 3, 4]}]}, 400,
             "wrong shape ([2,2])"),
            ({"inputs": [{"name": "image", "shape": [1, 2, 2, 3], "datatype": "UINT8", "data": [1, 2, 3]}]}, 400,
             "data shorter than the shape"),
            ({"inputs": [{"name": "image", "shape": [1, 1, 1, 3], "datatype": "UINT8", "data": [1, 2, 300]}]}, 400,
             "a UINT8 value over 255"),
            ({"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "data": ["not base64!"]}]}, 400,
             "bad base64"),
            ({"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "data": [s.b64(b"plain text")]}]}, 400,
             "BYTES that are no image"),
            ({"inputs": []}, 400, "no input"),
            ({"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "data": [s.b64(photo)]}],
              "outputs": [{"name": "logits_of_doom"}]}, 400, "an unknown output"),
        ]
        for request, expected_status, what in bad:
            status, answer = infer(request)
            t.check(status == expected_status and isinstance(answer, dict) and set(answer) == {"error"} and
                    isinstance(answer["error"], str), f"infer {what}: {expected_status} {{\"error\": ...}} "
                    f"(got {status}: {answer})")
        status, _, data = server.request("POST", "/v2/models/food/infer", b"{not json", {"Content-Type": "application/json"})
        t.check(status == 400 and "error" in json.loads(data), "infer with a body that is not JSON: 400 {\"error\"}")
        status, answer = infer({"inputs": []}, model_name="nope")
        t.check(status == 404 and "error" in answer, "infer on an unknown model: 404 {\"error\"}")
        t.check(server.alive(), "still serving after the OIP errors")


if __name__ == "__main__":
    cases = {"parity": parity, "api": api, "oip": oip}
    if len(sys.argv) != 2 or sys.argv[1] not in cases:
        sys.exit(f"usage: {sys.argv[0]} {'|'.join(cases)}")
    cases[sys.argv[1]]()
    t.finish()
