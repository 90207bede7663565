"""Run an adapter script without letting its own name shadow the library it adapts.

The harness starts ``python -P _launch.py <adapter.py> ...``: ``-P`` keeps the adapter's folder
off the front of ``sys.path`` (``peers/rq.py`` would otherwise hide the ``rq`` package); it is
appended at the end instead, so that ``import _common`` still works.
"""

import os
import runpy
import sys

sys.path.append(os.path.dirname(os.path.abspath(__file__)))
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
