"""Build time only: a Hugging Face CLAP checkpoint to an ONNX bundle with its parity proof, the reduced precisions,
the offline tokenizer recipe, FLOP counts and the quieting of export's library noise.

Only this floor (and the CLI verb that calls it) imports torch/transformers (``pip install 'streamdetect[export]'``);
nothing at run time imports it.
"""
