"""Settings of the test project: the database and statusq's config come from the environment."""

import os

SECRET_KEY = "test-only-not-secret"
INSTALLED_APPS = ["tests.django_project.notices"]
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
STATUSQ_CONFIG = os.environ["STATUSQ_CONFIG"]

if os.environ["APP_DB"].startswith("postgresql://"):
    # postgresql://host:port/name?options=-csearch_path%3Dschema, as the suite's pg_url gives it
    from urllib.parse import parse_qs, unquote, urlsplit

    url = urlsplit(os.environ["APP_DB"])
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": url.path.lstrip("/"),
            "HOST": url.hostname,
            "PORT": url.port,
            "USER": url.username or "postgres",
            "OPTIONS": {"options": unquote(parse_qs(url.query)["options"][0])},
        }
    }
else:
    DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": os.environ["APP_DB"]}}
