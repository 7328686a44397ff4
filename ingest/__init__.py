"""The outer layer: every way in and every process.

``webhook/`` receives Vapi's messages; ``admin/`` is the admin API and ``console/`` the operator
console, both taking who is calling from :mod:`ingest.callers`; ``cli/`` is ``vapi-ingest``. The
entry points (``prefork``, ``worker_main``, ``scheduler_main``) are the composition roots, and with
``settings`` the only code that reads the environment. May import ``workers`` and ``db``.
"""
