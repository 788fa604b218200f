from decaynet.cli import main

raise SystemExit(main())
