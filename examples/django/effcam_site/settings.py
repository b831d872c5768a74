"""The smallest Django settings that serve classify/: no database, no sessions, no templates."""
import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "effcam-example-not-secret")
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]
INSTALLED_APPS = ["classify"]
MIDDLEWARE = []
ROOT_URLCONF = "effcam_site.urls"
DATABASES = {}
USE_TZ = True
# Uploads up to 20 MiB are read in memory (the view reads the bytes anyway).
DATA_UPLOAD_MAX_MEMORY_SIZE = FILE_UPLOAD_MAX_MEMORY_SIZE = 20 << 20

# The converted model: python3 -m effcam convert ../../models/food101-effv2b0/food101_effv2b0.keras food101.effcam
#   --labels ../../models/food101-effv2b0/labels.txt
EFFCAM_MODEL = os.environ.get("EFFCAM_MODEL", str(BASE_DIR / "food101.effcam"))
# Requests served at once (Django's threaded runserver or a threaded WSGI server): one planned arena each.
EFFCAM_SESSIONS = int(os.environ.get("EFFCAM_SESSIONS", "2"))
