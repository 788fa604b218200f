"""`python -m benchmarks [--quick] [--out DIR] [--only NAME ...]`."""

from benchmarks.cli import main

raise SystemExit(main())
