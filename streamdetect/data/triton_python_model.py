"""model.py for Triton's Python backend: the exported audio encoder through onnxruntime, one run per execution.

Written by ``streamdetect export --triton-repo DIR --triton-backend python`` for a tritonserver that has no
onnxruntime backend (the one bundled in the nvidia-pytriton wheel). Triton's dynamic batcher hands ``execute``
the requests it gathered; their windows go through onnxruntime as one batch, so the batching happens in the
server just as with the onnxruntime backend. This file runs inside the server's Python, not in streamdetect.
"""

import json
import os
from typing import Any

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        config = json.loads(args["model_config"])
        self.input_name = config["input"][0]["name"]
        self.output_name = config["output"][0]["name"]
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(os.environ.get("STREAMDETECT_TRITON_THREADS", "0"))
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        path = os.path.join(args["model_repository"], args["model_version"], "model.onnx")
        self.session = ort.InferenceSession(path, sess_options=options, providers=["CPUExecutionProvider"])

    def execute(self, requests: list[Any]) -> list[Any]:  # pb_utils.InferenceRequest -> InferenceResponse
        batches = [pb_utils.get_input_tensor_by_name(r, self.input_name).as_numpy() for r in requests]
        embeddings = self.session.run([self.output_name], {self.input_name: np.concatenate(batches)})[0]
        responses, start = [], 0
        for batch in batches:
            end = start + batch.shape[0]
            out = pb_utils.Tensor(self.output_name, np.ascontiguousarray(embeddings[start:end]))
            responses.append(pb_utils.InferenceResponse(output_tensors=[out]))
            start = end
        return responses
