"""The id rule of the contract (§3): ``^[A-Za-z0-9_-]{1,64}$`` (UUIDs fit). One owner."""

from __future__ import annotations

import re

ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
ID_RE = re.compile(ID_PATTERN)
