"""The mini CLAP sub-project: a generated sound world, a small CLAP trained on it, and the quality figures
measured with it (mini/README.md says how each artefact is rebuilt).

Run from the repository root as modules (``python -m mini.train``, ``python -m mini.figures`` ...). Not installed
with streamdetect: it imports streamdetect, never the other way round.
"""
