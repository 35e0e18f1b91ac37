"""`python -m services.auth`: the same as `liveboard serve auth`."""

import sys

from libs.common.runner import main

sys.exit(main("auth"))
