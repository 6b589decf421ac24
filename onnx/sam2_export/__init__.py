"""SAM 2 -> ONNX exporter for PixelRefer Studio (see onnx/export_sam2.py)."""
