"""`python -m helpers ...`: the headless entry point."""

from helpers.cli import main

raise SystemExit(main())
