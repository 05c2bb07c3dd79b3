"""Minimal stand-in for the `safetensors` package (not packaged for Debian 12): enough of
safetensors.numpy (load_file, save_file) for tests/cli/export.sh to run the snippet of docs/export.md
unchanged. Written from the format: u64 LE header length, JSON header, raw little-endian data."""
