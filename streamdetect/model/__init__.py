"""The model folder on disk: its manifest and the types it stores (``FrontendParams``), its identity, and the Triton repository written from it."""
