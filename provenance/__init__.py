"""What is stored and how it is found: Data plugins, queries, exports and reports."""
