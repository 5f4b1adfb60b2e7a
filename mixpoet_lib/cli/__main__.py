"""``python -m mixpoet_lib.cli …`` runs the ``mixpoet`` command."""

import sys

from mixpoet_lib.cli.app import main

sys.exit(main())
