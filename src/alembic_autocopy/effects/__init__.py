"""The boundaries that act on the world: git, the database and its lock, files placed on disk,
and the project's configuration. They import only the core."""
