"""EdgeTAM exporter (onnx/export_edgetam.py); imports the EdgeTAM `sam2` package, never the official one."""
