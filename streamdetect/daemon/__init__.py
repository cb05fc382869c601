"""The daemon: building the detector from a config, the batching engine for many streams, the service that wires a run together, /metrics, the control API, the embedding-log writer."""
