"""Boards service: the only writer of kanban data; ordered board events and the outbox relay."""
