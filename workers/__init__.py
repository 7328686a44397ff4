"""The domain: the Vapi message model (``messages``, ``parsing``, ``sanitize``, ``encryption``),
processing and its handlers (``processing``, ``handlers/``: calls, booking, business hours), inline
tool calls, the lanes and their admission, the Dramatiq broker and actors, the sweeper, replays and
retention. Imports ``db``, never ``ingest``, and never reads the environment.
"""
