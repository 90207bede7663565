"""The rq job function: rq refuses functions defined in ``__main__``."""

from _common import COUNTER


def noop(x: int) -> None:
    COUNTER.hit()
