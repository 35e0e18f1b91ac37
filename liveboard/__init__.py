"""The ``liveboard`` command: serve, migrate, dev, token, bench."""
