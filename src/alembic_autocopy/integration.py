"""The env.py line's public home: ``**alembic_autocopy.integration.options()``.

Projects write this import path into their env.py, so it never moves; the code lives in
``alembic_autocopy.workflow.integration``.
"""

from alembic_autocopy.workflow.integration import (
    healing_fn,
    include_name,
    include_object,
    options,
    record_applied,
    record_table_names,
)

__all__ = ["healing_fn", "include_name", "include_object", "options", "record_applied",
           "record_table_names"]
