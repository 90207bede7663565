"""Migrations of the ORM mirror's models (queues, jobs, dead letters, workers)."""
