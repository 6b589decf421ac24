"""Generic helpers shared by the PixelRefer Studio model exporters (manifest, hashes, ONNX I/O specs)."""
from .manifest import (  # noqa: F401
    MANIFEST_FORMAT,
    dedupe_large_constants,
    graph_io_spec,
    sha256_file,
    write_manifest,
)
