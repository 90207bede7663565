from __future__ import annotations

from typing import ClassVar

from django.db import models


class Note(models.Model):
    """Written by the test actors so tests can see that (and how often) they ran."""

    tag = models.CharField(max_length=100)
    created = models.DateTimeField(auto_now_add=True)

    objects: ClassVar[models.Manager[Note]] = models.Manager()

    def __str__(self) -> str:
        return self.tag
