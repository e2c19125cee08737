"""Where migrations come from: worktrees and folders, the persistent index, git objects of every
ref, the database's record table, and the trust rules for each. Below them: core and effects."""
