"""Generic helpers shared by the PixelRefer Studio model exporters (manifest, hashes, ONNX I/O specs,
progress lines and error reporting)."""
from .cli import (  # noqa: F401
    PROGRESS_PREFIX,
    ArgumentParser,
    ExportError,
    parse_progress_line,
    progress,
    run_main,
)
from .manifest import (  # noqa: F401
    MANIFEST_FORMAT,
    dedupe_large_constants,
    graph_io_spec,
    sha256_file,
    write_manifest,
)
