"""The dispatch pipeline: `pipeline.py` lists the stages (`stages/`), `ports.py` declares what they talk to."""
