"""The pure core: migration headers, parsing, the revision graph (Alembic's ``RevisionMap``),
planning and drift. No input or output, and nothing of the package outside this folder."""

__version__ = "0.1.0"  # here, at the bottom, so that every layer may name it
