from alembic_autocopy.main import main

raise SystemExit(main())
