"""MLServer custom runtime for oip_server.py --engine mlserver: one ONNX Runtime CPU session per
model, configured by the spec that oip_server.py parsed from the model's config.pbtxt (passed in
model-settings.json as parameters.extra.oip_spec).

What MLServer 1.7 does around it (grpc/converters.py, raw.py): `raw_input_contents` are unpacked
with struct (native byte order, so little-endian here) into Python lists per the request's
datatype and shape (FP16 via struct 'e'), and when a request carried raw inputs the response is
packed back into `raw_output_contents` from the datatype and shape of each output, FP16
included. Values survive exactly (float32/float16 -> Python float -> same type).
"""

from __future__ import annotations

import asyncio

import numpy as np
from mlserver import MLModel
from mlserver.errors import InferenceError, MLServerError
from mlserver.types import InferenceRequest, InferenceResponse, ResponseOutput

from oip_server import NUMPY_OF, OrtRunner, check_request


class OnnxRuntimeModel(MLModel):
    async def load(self) -> bool:
        extra = (self.settings.parameters.extra or {}) if self.settings.parameters else {}
        spec = extra.get("oip_spec")
        if not spec:
            raise MLServerError(f"model {self.name}: no oip_spec in model-settings parameters.extra", 500)
        self._spec = spec
        self._runner = OrtRunner(spec)
        self._delay = spec["delay_ms"] / 1000.0
        self._lock = asyncio.Lock()
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        spec = self._spec
        wanted = [o.name for o in (payload.outputs or [])]
        try:
            check_request(spec, [(i.name, i.datatype, list(i.shape)) for i in payload.inputs], wanted)
        except ValueError as e:
            raise InferenceError(str(e)) from e
        arrays = {}
        for i in payload.inputs:
            data = i.data.root if hasattr(i.data, "root") else i.data
            a = np.asarray(data, dtype=NUMPY_OF[i.datatype])
            if a.size != int(np.prod(i.shape, dtype=np.int64)):
                raise InferenceError(f"input '{i.name}': {a.size} values for shape {list(i.shape)}")
            arrays[i.name] = a.reshape(i.shape)
        if self._delay:
            await asyncio.sleep(self._delay)
        loop = asyncio.get_running_loop()
        # One execution at a time per model (as one Triton model instance), off the event loop.
        async with self._lock:
            out = await loop.run_in_executor(None, self._runner.run, arrays, wanted or None)
        dtypes = {t["name"]: t["datatype"] for t in spec["outputs"]}
        outputs = [
            ResponseOutput(name=n, shape=list(a.shape), datatype=dtypes[n], data=a.reshape(-1).tolist())
            for n, a in out.items()
        ]
        return InferenceResponse(model_name=self.name, model_version=self.version, id=payload.id, outputs=outputs)
