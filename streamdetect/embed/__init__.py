"""The model at run time: the log-mel front end, the ``AudioEncoder`` Protocol and its backends (onnxruntime,
OpenVINO, Triton, KServe), the text encoder, clip embedding and vector helpers.

It sits below prompts and the pipeline and knows nothing of events: everything above turns audio into vectors
through this floor only.
"""
