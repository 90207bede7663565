"""Management commands of repid_django."""
