"""``python -m ragtrail``: the same as the ``ragtrail`` command."""

from ragtrail.cli import main

raise SystemExit(main())
