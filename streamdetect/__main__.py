from streamdetect.entry import main

raise SystemExit(main())
