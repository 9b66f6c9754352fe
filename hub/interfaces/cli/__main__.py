"""``python -m lineagehub.interfaces.cli``: the ``lineagehub`` command."""

import sys

from lineagehub.interfaces.cli import main

sys.exit(main())
