"""WSGI entry point (gunicorn, uwsgi, mod_wsgi: effcam_site.wsgi:application)."""
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "effcam_site.settings")
application = get_wsgi_application()
