"""A real Django project the suite runs statusq.contrib.django in (tests/integration/test_django.py)."""
