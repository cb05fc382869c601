"""The dashboard's typed route definitions (as Frigate's ``api/defs``): ``query`` holds one model per route's
query parameters, ``response`` one per route's JSON answer. The handlers in ``web/routes_*.py`` read the former
and answer with the latter, so each route's inputs and fields are written down once, where a reader and a type
checker can see them."""
