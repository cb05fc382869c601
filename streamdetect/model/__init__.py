"""The CLAP model on disk: its manifest, the export from a Hugging Face checkpoint, and its reduced precisions."""
