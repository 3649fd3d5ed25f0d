"""Reusable graders for the example environments (importable as `examples.graders.<module>:grade`)."""
