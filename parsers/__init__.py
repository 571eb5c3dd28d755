"""One ``Parser`` per CalcJob: retrieved files -> output nodes and exit codes."""
