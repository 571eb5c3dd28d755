"""ML code that runs inside jobs, on a laptop or a compute node. Nothing here imports AiiDA."""
