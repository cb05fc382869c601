"""The web dashboard the daemon serves when ``web.port`` is set: live view, events, review, activity, prompt
playground and settings.

``server.WebServer`` runs a Starlette app under uvicorn in a thread that ``DetectorService`` owns; ``live.LiveHub``
hears the audio tap and the detector's window results and holds what the live view shows. Nothing outside
``daemon`` and ``cli`` imports this package.
"""
