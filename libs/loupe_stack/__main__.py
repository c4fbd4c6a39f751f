from loupe_stack.cli import main

raise SystemExit(main())
