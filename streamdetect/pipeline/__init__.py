"""The data path from audio to records: windows, log-mel front end, audio encoder, scores, event state machine, detector."""
