"""What to listen for, as embeddings: prompt cache, prompt bank, audio examples, feedback refinement, vocabulary."""
