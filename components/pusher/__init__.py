"""Pusher: only blessed, new models reach serving, as complete versions (TFX adapter)."""
