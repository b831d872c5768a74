#!/usr/bin/python3
"""Django's command-line utility for this example (python3 manage.py runserver | test)."""
import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "effcam_site.settings")
    from django.core.management import execute_from_command_line
    execute_from_command_line(sys.argv)
