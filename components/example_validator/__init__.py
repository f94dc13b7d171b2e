"""ExampleValidator whose anomalies stop the run (TFX adapter)."""
