"""`python -m services.audit`: the same as `liveboard serve audit`."""

import sys

from libs.common.runner import main

sys.exit(main("audit"))
