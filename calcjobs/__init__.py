"""``CalcJob`` plugins: what a job needs on the remote side and which files come back."""
