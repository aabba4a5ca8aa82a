"""Message modules generated from the spec CSVs by `python -m ampere.wire.generate`: do not edit."""
