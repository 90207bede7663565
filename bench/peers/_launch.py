"""Run an adapter script without letting its own name shadow the library it adapts.

The harness starts ``python -P _launch.py <adapter.py> ...``: ``-P`` keeps the adapter's folder
off ``sys.path`` (``peers/rq.py`` would otherwise hide the ``rq`` package); only ``peers/shared``
(``_common``, ``_rq_jobs``) is put on it.
"""

import os
import runpy
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "shared"))
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
