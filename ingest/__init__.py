"""The aiohttp receiver for Vapi server messages, and the ``vapi-ingest`` CLI."""
