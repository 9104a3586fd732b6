"""DVC stages: one thin module per stage (read params, call sisgan, write outputs)."""
