"""One helper per mechanism shared across the package: atomic write, safe names, back-off, rate-limited logging."""
