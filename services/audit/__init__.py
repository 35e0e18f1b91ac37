"""Audit service: durable consumers writing the tamper-evident activity and security log."""
