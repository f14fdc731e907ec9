"""Views: small plugins with ``widget``, ``on_events(events)`` and ``close()``."""
