"""``python -m plexus_sdk build|describe``: see :mod:`plexus_sdk.build`."""

import sys

from .build import main

sys.exit(main())
