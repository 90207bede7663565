"""Prometheus metrics: job counters and histograms, live queue depths, workers alive.

Where the numbers come from:

* ``repid_jobs_enqueued_total`` counts, in the process that enqueues, the jobs the broker wrote
  (:mod:`.enqueue`: the process's brokers count what their ``enqueue`` calls wrote).
* The other job counters and the two histograms count, in each worker, the job events the
  engine hands to its listeners (:class:`.listener.MetricsListener`, added by ``runworker``).
* The ``repid_queue_*`` gauges and ``repid_workers_alive`` are read live at scrape time, from
  Redis and from the workers' heartbeats in the ORM (:mod:`.live`).

They are served by a Django view (:mod:`.views`, ``include("repid_django.metrics.urls")``,
guarded by ``REPID["METRICS_AUTH"]``, :mod:`.auth`) and by ``runworker --metrics-port`` in each
worker process (:mod:`.server`). Labels are bounded: ``actor`` and ``queue`` (and, on dead
letters, the reason), never a job id; past a fixed number of actors or queues, new names are
counted under ``_other`` (:mod:`.labels`). See docs/observability.md.

The package imports nothing itself: ``repid_django.connection`` imports :mod:`.enqueue` alone.
"""
