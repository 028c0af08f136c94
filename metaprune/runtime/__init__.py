"""How jobs run on the machine.

- :mod:`~metaprune.runtime.threads` -- torch threads chosen by the free cores.
- :mod:`~metaprune.runtime.interrupts` -- SIGTERM stops a job as Ctrl-C does.
"""
