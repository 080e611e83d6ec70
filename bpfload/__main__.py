"""``python -m bpfload``: the ``bpfload`` command."""
import sys

from .cli.main import main

sys.exit(main())
