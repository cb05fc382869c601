"""Detection: windows over the ring buffer, scores against the prompt bank, novelty, the event state machine, streams and the detector."""
