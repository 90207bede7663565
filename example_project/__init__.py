"""A small real site that uses every feature of repid_django (``python manage.py demo``)."""
