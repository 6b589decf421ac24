//! The ONNX Runtime environment: locating the shared library, execution providers, model
//! directories and manifests.
