from streamdetect.cli import main

raise SystemExit(main())
