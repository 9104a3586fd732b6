"""User-facing errors: one sentence saying what was wrong and what to do."""


class SisganError(Exception):
    """An error caused by the user's input or configuration (printed as one line, exit code 2)."""


class ConfigError(SisganError):
    """params.yaml (or a config dict) has a bad value or an unknown key."""


class DataError(SisganError):
    """Input data is missing, corrupt or fails verification."""
