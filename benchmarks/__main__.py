"""``python -m benchmarks``: run the ratio benchmarks (see ``--help``)."""

from benchmarks.harness import main

raise SystemExit(main())
