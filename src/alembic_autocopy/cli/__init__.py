"""The command line: argument parsing, terminal output and progress, the wording of every
report and refusal, graph drawing, and one module per verb in ``commands/``."""
