"""Realtime service: Socket.IO rooms on aiohttp; delivers committed board events to members."""

from . import internals

internals.check()
