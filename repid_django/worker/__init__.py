"""The Django side of ``runworker``: finding actors in installed apps' ``tasks.py``
(``discovery``) and building the engine's Worker from the settings (``build``).
"""
