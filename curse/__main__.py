from curse.cli import main

raise SystemExit(main())
