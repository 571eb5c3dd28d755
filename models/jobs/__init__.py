"""The entry points that ``mlqm.train`` and ``mlqm.predict`` jobs run (``python -m aiida_mlqm.models.jobs.train``):
JSON in, files and a status out. The library they call (training, prediction, serialisation) is one level up and
knows nothing of jobs.
"""
