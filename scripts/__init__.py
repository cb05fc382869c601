"""Developer and operator scripts: install (setup.sh), the layout check, the configuration reference, the
README figures, a virtual microphone and a local Triton server.

Run from the repository root as modules (``python -m scripts.check_imports`` ...). Not installed with
streamdetect: they import it (and ``mini`` for scenes), it never imports them.
"""
