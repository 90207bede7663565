"""The live monitor: a staff-only page that a Channels WebSocket keeps up to date.

``snapshot`` builds what the page shows, ``consumers`` pushes it, ``routing`` wires the
WebSocket URL (``ws/repid/monitor/``) and ``views`` serves the page.
"""
