"""The serving directory (TF Serving's layout), the fresh-process serving check, and batch
prediction with a pushed model: shared by Trainer, ServingBaseline, Pusher and the command
line. No TFX."""
