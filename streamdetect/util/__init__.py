"""One helper per mechanism shared across the package: atomic write, safe names, back-off, rate-limited logging,
URL masking, path locks, child processes, the C heap, the default state folder."""
