"""``python -m jaxflow.cli``: the ``jaxflow`` command."""

import sys

from jaxflow.cli import main

sys.exit(main())
