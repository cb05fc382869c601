"""Offline analysis of recordings: file replay, scan and its plot, tag, index and search, the embedding-log reader, evaluate, calibrate."""
