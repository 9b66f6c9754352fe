import sys

from lineagehub.interfaces.cli import main

sys.exit(main())
