"""The frozen binary's entry point: the same `main` as `python -m longpoll`."""

from longpoll.cli import main

raise SystemExit(main())
