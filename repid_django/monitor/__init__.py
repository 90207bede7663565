"""The live monitor: a page for staff with the view permission that a Channels WebSocket keeps
up to date.

``snapshot`` builds what the page shows (``history``: the charts' last hour), ``consumers``
pushes it, ``access`` says who may watch (checked again before each push), ``routing`` wires
the WebSocket URL (``ws/repid/monitor/``) and ``views`` serves the page.
"""
