"""``liveboard bench``: a load generator for any running Liveboard deployment.

Like ``pgbench`` or ``nats bench``: bounded in count and time, prints a table and one JSON line.
Clients speak Engine.IO v4 / Socket.IO v5 frames directly (``eio``), spread over several
processes (``pool``, ``agents``); set-up goes through the public REST (``target``); server cost
comes from ``/proc`` (``procstat``). Modes: ``capacity``, ``fanout``, ``moves``, ``catchup``.
"""
