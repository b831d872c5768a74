"""POST an image, get its top classes and a Grad-CAM overlay: the dermatology app's view, with effcam.

The app's function was predict_skin_with_explanation(image_bytes) over TensorFlow (400 to 900 MB per process).
With effcam it is the two lines marked below, in a process of tens of MB.
"""
import base64
import functools

import effcam
from django.conf import settings
from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST


@functools.lru_cache(maxsize=None)
def model():
    """One model per process, loaded on first use and shared by every request thread."""
    return effcam.Model(settings.EFFCAM_MODEL, sessions=settings.EFFCAM_SESSIONS)


def predict_with_explanation(image_bytes, top_k=3):
    """The top classes and the Grad-CAM overlay (PNG, base64) of an encoded image."""
    explanation = model().explain(image_bytes, top_k=top_k)                      # effcam, line 1
    heatmap_base64 = base64.b64encode(explanation.overlay_png()).decode("ascii")  # effcam, line 2
    top = [{"label": c.label, "index": c.index, "probability": c.probability} for c in explanation.prediction.top_k]
    return {"predictions": top, "heatmap_base64": heatmap_base64, "cam_layer": explanation.layer}


@csrf_exempt
@require_POST
def predict(request):
    """multipart/form-data with an "image" file, or the image itself as the request body."""
    upload = request.FILES.get("image")
    image_bytes = upload.read() if upload else request.body
    if not image_bytes:
        return JsonResponse({"error": "no image: send a file field 'image' or the image as the body"}, status=400)
    try:
        return JsonResponse(predict_with_explanation(image_bytes))
    except effcam.ImageError as error:
        return JsonResponse({"error": str(error)}, status=400)
