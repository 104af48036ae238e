"""The contract of the fabric's sans-IO state machines, and its one helper.

Each machine (``interchange.scheduler.Scheduler``, ``manager.scheduler.ManagerScheduler``,
``interchange.strategy.Strategy``) names two unions in its module: ``Event``, what may
happen to it, and ``Action``, what it may ask for. ``handle(event: Event) -> list[Action]``
only changes the machine's state and says what to do; the process that owns the sockets
carries every action out, always as ``execute(machine.handle(event))``, and each
``execute`` is a ``match`` over ``Action`` that ends in ``assert_never``. So mypy proves
that every event is handled and every action carried out: a new class in either union
that some ``match`` forgets is a type error, not a message silently dropped.
"""

from __future__ import annotations

from typing import NoReturn


def assert_never(value: NoReturn) -> NoReturn:
    """The end of an exhaustive ``match``: mypy accepts a call only where every case is
    covered; at run time (a value outside the union, from untyped code) it raises TypeError."""
    raise TypeError(f"unexpected {type(value).__name__}: {value!r}")
