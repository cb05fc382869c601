"""The web dashboard the daemon serves when ``web.port`` is set: live view, events, review, activity, prompt
playground and settings.

``server.HttpSurface`` runs the daemon's ASGI apps under uvicorn in a thread that ``DetectorService`` owns: the
dashboard, and (with the ``web`` extra installed) the control API and ``/metrics``/``/healthz`` on their own
ports (``routes_control``, ``routes_metrics``; ``endpoints`` and ``guard`` need no framework, so the daemon's
stdlib fallback sends the same answers). ``live.LiveHub``
hears the audio tap and the detector's window results and holds what the live view shows. Nothing outside
``daemon`` and ``cli`` imports this package.
"""
