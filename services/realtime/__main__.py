"""`python -m services.realtime`: the same as `liveboard serve realtime`."""

import sys

from libs.common.runner import main

sys.exit(main("realtime"))
