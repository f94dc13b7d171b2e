"""Drift: is a new span like the data the serving model was trained on? Checked by the
RetrainGate before anything trains (settings: the `drift:` section)."""
