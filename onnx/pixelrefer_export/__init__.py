"""PixelRefer / PixelRefer-Lite ONNX exporter and PyTorch reference (see onnx/PIXELREFER_NOTES.md)."""
