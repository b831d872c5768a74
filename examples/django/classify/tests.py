"""The view through Django's test client: the bundled bibimbap photo comes back as bibimbap, with a valid PNG
overlay of the model's input size; bad requests get a 4xx and a one-line error."""
import base64
import io
import os
import tempfile

import effcam
from django.conf import settings
from django.test import SimpleTestCase
from PIL import Image

from classify import views

BUNDLED = os.path.join(settings.BASE_DIR, "..", "..", "models", "food101-effv2b0")
BIBIMBAP = os.path.join(BUNDLED, "samples", "bibimbap.png")


class PredictViewTests(SimpleTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.scratch = tempfile.TemporaryDirectory()
        if not os.path.exists(settings.EFFCAM_MODEL):  # no converted model: convert the bundled one
            settings.EFFCAM_MODEL = os.path.join(cls.scratch.name, "food101.effcam")
            effcam.convert(os.path.join(BUNDLED, "food101_effv2b0.keras"), settings.EFFCAM_MODEL,
                           labels=os.path.join(BUNDLED, "labels.txt"))
        views.model.cache_clear()

    @classmethod
    def tearDownClass(cls):
        views.model().close()
        views.model.cache_clear()
        cls.scratch.cleanup()
        super().tearDownClass()

    def test_upload_returns_bibimbap_and_a_png_overlay(self):
        with open(BIBIMBAP, "rb") as f:
            response = self.client.post("/predict", {"image": f})
        self.assertEqual(response.status_code, 200)
        body = response.json()
        self.assertEqual(body["predictions"][0]["label"], "bibimbap")
        self.assertEqual(len(body["predictions"]), 3)
        probabilities = [p["probability"] for p in body["predictions"]]
        self.assertEqual(probabilities, sorted(probabilities, reverse=True))
        png = base64.b64decode(body["heatmap_base64"], validate=True)
        self.assertTrue(png.startswith(b"\x89PNG\r\n\x1a\n"))
        with Image.open(io.BytesIO(png)) as overlay:
            overlay.verify()  # a complete, uncorrupted PNG
        with Image.open(io.BytesIO(png)) as overlay:
            self.assertEqual((overlay.format, overlay.mode), ("PNG", "RGB"))
            self.assertEqual(overlay.size, tuple(reversed(views.model().input_size)))

    def test_raw_body_gives_the_same_answer(self):
        with open(BIBIMBAP, "rb") as f:
            image_bytes = f.read()
        response = self.client.post("/predict", data=image_bytes, content_type="image/png")
        self.assertEqual(response.status_code, 200)
        self.assertEqual(response.json(), views.predict_with_explanation(image_bytes))

    def test_bad_requests(self):
        response = self.client.post("/predict", data=b"this is not an image", content_type="image/png")
        self.assertEqual(response.status_code, 400)
        self.assertIn("error", response.json())
        self.assertNotIn("\n", response.json()["error"])
        self.assertEqual(self.client.post("/predict", data=b"", content_type="image/png").status_code, 400)
        self.assertEqual(self.client.get("/predict").status_code, 405)
