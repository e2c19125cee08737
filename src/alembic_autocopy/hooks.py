"""The entry point installed git hooks call: ``python -m alembic_autocopy.hooks``.

Hook scripts already written into repositories name this path, so it never moves; the code
lives in ``alembic_autocopy.workflow.hooks``.
"""

if __name__ == "__main__":
    from alembic_autocopy.workflow.hooks import main

    raise SystemExit(main())
