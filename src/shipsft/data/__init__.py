"""Data pipeline: files -> conversations (formats) -> ids + labels (render) -> packed rows (pack)."""
