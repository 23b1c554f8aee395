"""`make bench`: the handler's figures, one module per figure; `python -m bench` runs them all."""
