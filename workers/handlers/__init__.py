"""Plain async handlers, one per message type, testable without Dramatiq."""
