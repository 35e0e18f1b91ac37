"""`python -m services.boards`: the same as `liveboard serve boards`."""

import sys

from libs.common.runner import main

sys.exit(main("boards"))
