"""`python -m longpoll`: the same command line as the frozen binary."""

from longpoll.cli import main

raise SystemExit(main())
