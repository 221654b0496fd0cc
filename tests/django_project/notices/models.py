from django.db import models


class Notice(models.Model):
    text = models.TextField()

    class Meta:
        app_label = "notices"
