"""The example shop: orders whose follow-up work runs as background jobs."""
