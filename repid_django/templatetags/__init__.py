"""Template tags of the admin console's pages (``repid_admin``: status tones, ages, the dashboard's
counts and the broker label; ``repid_schedules``: the schedules panel)."""
