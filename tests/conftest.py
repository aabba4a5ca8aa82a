"""Suite-wide fixtures: the same ones plugin authors use (ampere.testing.fixtures)."""

pytest_plugins = ["ampere.testing.fixtures", "ampere.testing.postgres"]
