"""The repair in a developer's day: git hooks, the event log and notifications, the env.py
integration (healing plain ``alembic``), autogenerate ownership and the Python API."""
