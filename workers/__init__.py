"""Dramatiq actors and the plain async handlers they run."""
