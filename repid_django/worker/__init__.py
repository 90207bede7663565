"""The Django side of ``runworker``: finding actors in installed apps' ``tasks.py``
(``discovery``), building the engine's Worker from the settings (``build``) and the project's
periodic schedules: settings, sync to the table, the table as the workers' source
(``schedules``).
"""
