from alembic_autocopy.cli.main import main

raise SystemExit(main())
