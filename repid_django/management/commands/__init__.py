"""runworker and prune."""
