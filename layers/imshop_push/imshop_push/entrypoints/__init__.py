"""Lambda entry points and wiring: configuration parsed once, the adapters built, the pipeline run."""
